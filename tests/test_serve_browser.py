"""The web page in headless Chromium: moving a slider steers the next response; compare view; Pareto plot.

Needs Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver) and
``selenium`` from PyPI; skipped with the reason when any is missing. Selenium never downloads a browser
or a driver here: both paths are given and Selenium Manager runs offline.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from pluralign.generation.policy import SteerablePolicy
from pluralign.models.manifest import Manifest
from pluralign.serve.app import ServerSettings, create_app
from pluralign.serve.background import serve_in_thread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OBJECTIVES = ["sentiment", "conciseness"]


class CharTokenizer:
    """One token per character (its code point): enough for the server to stream and count tokens."""

    eos_token_id = 0
    pad_token_id = 0
    chat_template = None
    clean_up_tokenization_spaces = False

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)

    def get_vocab(self):
        return {"<eos>": 0}


class WeightsPolicy(SteerablePolicy):
    """Answers with the weights it was steered by, so the page's text shows the slider positions; the
    answer is streamed one character (token) at a time, a few milliseconds apart."""

    token_streaming = True

    def __init__(self) -> None:
        self.manifest = Manifest(method="ric", objectives=list(OBJECTIVES))
        self.model_dir = Path(".")
        self.tokenizer = CharTokenizer()

    def generate(self, prompts, preference=None, context=None, **gen):
        return self.generate_many(prompts, [preference] * len(prompts), **gen)

    def generate_many(self, prompts, preferences, on_token=None, **gen):
        out = []
        for prompt, pref in zip(prompts, preferences):
            w = self.resolve_preference(pref)
            out.append(f"{prompt} -> sentiment {w.weights[0]:.2f} conciseness {w.weights[1]:.2f}")
        if on_token is not None:
            for step in range(max(len(t) for t in out)):
                for i, text in enumerate(out):
                    if step < len(text):
                        on_token(i, ord(text[step]))
                time.sleep(0.01)
        return out


@pytest.fixture()
def driver(tmp_path, monkeypatch):
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip("chromium is not installed (apt-get install -y chromium chromium-driver)")
    if not (os.path.exists(CHROMEDRIVER) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("chromedriver is not installed (apt-get install -y chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def test_slider_moves_steer_the_response_compare_and_front(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    front = {
        "objectives": OBJECTIVES,
        "reference_point": [-1, -10],
        "fronts": [
            {
                "method": "ric",
                "hypervolume": 3.2,
                "wall_seconds": 1.0,
                "points": [{"preference": [w / 10, 1 - w / 10], "scores": [w / 10, -2 - w / 3]} for w in range(11)],
            },
            {
                "method": "sft",
                "hypervolume": 1.1,
                "wall_seconds": 1.0,
                "points": [{"preference": [0.5, 0.5], "scores": [0.3, -4.0]}],
            },
        ],
    }
    front_path = tmp_path / "front.json"
    front_path.write_text(json.dumps(front))
    app = create_app(WeightsPolicy(), ServerSettings(model_name="demo-model"), front_path=front_path)
    wait = WebDriverWait(driver, 20)

    with serve_in_thread(app) as url:
        driver.get(url + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        assert "demo-model" in driver.find_element(By.ID, "model-info").text
        sliders = driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
        assert [s.get_attribute("id") for s in sliders] == ["slider-sentiment", "slider-conciseness"]

        driver.find_element(By.ID, "prompt").send_keys("the weather today")
        # move the sentiment slider to zero: only conciseness is left, so the weights are (0, 1)
        slider = driver.find_element(By.ID, "slider-sentiment")
        slider.click()
        slider.send_keys(Keys.HOME)
        assert driver.find_element(By.ID, "weight-sentiment").text == "0.00"
        assert driver.find_element(By.ID, "weight-conciseness").text == "1.00"
        response = driver.find_element(By.ID, "response")
        expected = "the weather today -> sentiment 0.00 conciseness 1.00"
        # the text grows token by token while the response streams
        WebDriverWait(driver, 20, poll_frequency=0.01).until(
            lambda d: response.get_attribute("data-state") == "streaming" and 0 < len(response.text) < len(expected)
        )
        assert expected.startswith(response.text)
        wait.until(lambda d: response.get_attribute("data-state") == "done" and response.text == expected)

        # move it the other way: to 100 against 50, weights (2/3, 1/3)
        slider.send_keys(Keys.END)
        wait.until(lambda d: "sentiment 0.67" in response.text and response.get_attribute("data-state") == "done")
        assert response.text == "the weather today -> sentiment 0.67 conciseness 0.33"

        driver.find_element(By.ID, "compare").click()
        wait.until(lambda d: all(c.text != "…" for c in d.find_elements(By.CSS_SELECTOR, "#compare-results .col div")))
        cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#compare-results .col div")]
        assert cells == [
            f"the weather today -> sentiment {w:.2f} conciseness {1 - w:.2f}" for w in (0, 0.25, 0.5, 0.75, 1)
        ]

        assert driver.find_element(By.ID, "front-view").is_displayed()
        points = driver.find_elements(By.CSS_SELECTOR, "#front-plot circle.point")
        assert len(points) == 12
        driver.save_screenshot(str(tmp_path / "page.png"))
        # clicking a point of the model's own front sets the sliders to that point's preference
        mine = [p for p in points if p.get_attribute("data-preference") == "[0.3,0.7]"]
        assert len(mine) == 1
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", mine[0])
        assert driver.find_element(By.ID, "weight-sentiment").text == "0.30"
        wait.until(lambda d: "sentiment 0.30" in response.text and response.get_attribute("data-state") == "done")

        shot = os.environ.get("PLURALIGN_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)
    assert (tmp_path / "page.png").stat().st_size > 10_000
