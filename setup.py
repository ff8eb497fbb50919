"""The distribution's one import namespace, `privaudit`, over the repository's folders:

    protos/gen/python/privaudit -> privaudit          (the generated messages and stubs)
    services                    -> privaudit.services (orchestrator, attack worker, reporter)
    client                      -> privaudit.client   (the CLI and the Python API)

Everything else is in pyproject.toml. A service image copies only the folders it runs; the
ones it leaves out are not packaged."""

from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = {"privaudit": "protos/gen/python/privaudit", "privaudit.services": "services", "privaudit.client": "client"}

package_dir = {name: folder for name, folder in FOLDERS.items() if (Path(folder) / "__init__.py").is_file()}
packages = [sub for name, folder in package_dir.items()
            for sub in (name, *(f"{name}.{package}" for package in find_packages(folder)))]
setup(packages=packages, package_dir=package_dir)
