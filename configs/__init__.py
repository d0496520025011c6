"""The preset configurations, shipped inside the package so ``--config NAME`` works from any install."""
