"""Build hook only (the project is described in pyproject.toml): ship conf/ inside the wheel.

`conf/` at the repository root is the one source of truth for Keel's config groups. A wheel has no
repository root, so `build_py` copies every YAML file of conf/ into the package as `pipeline/conf/`,
where pipeline/spec/package_conf.py finds it. An editable install reads conf/ in place.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithConf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "pipeline" / "conf"
        for source in sorted((ROOT / "conf").rglob("*.y*ml")):
            out = target / source.relative_to(ROOT / "conf")
            out.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(source), str(out))


setup(cmdclass={"build_py": BuildWithConf})
