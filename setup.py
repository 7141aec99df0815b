"""The one distribution: the core and the demo from src/, the first-party
router plugins from plugins/ (each a top-level package of its own)."""

from setuptools import find_packages, setup

plugins = find_packages("plugins")
setup(
    packages=find_packages("src") + plugins,
    package_dir={"": "src", **{p: "plugins/" + p.replace(".", "/") for p in plugins}},
)
