"""streamapp: one Faust app for vitals alerts, machine health, RUL forecasts and return probabilities.

`faust -A streamapp worker` finds `streamapp.app` here.
"""

from streamapp.app import app

__all__ = ["app"]
