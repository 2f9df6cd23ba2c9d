"""DPO over one or several merged preference dimensions, and the margin DPO trainer SPO and MODPO share."""
