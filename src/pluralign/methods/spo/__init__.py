"""SPO: sequential DPO over preference dimensions, keeping earlier rounds' implicit rewards as a margin."""
