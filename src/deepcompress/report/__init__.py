"""The report a person reads in a browser: study.json (schema.py), rendering to one self-contained HTML page
and a markdown twin (render.py), small PNG figures (figures.py), and a headless-browser check (browser.py).

Imports neither torch nor training code: it reads what the studies and the main job wrote."""

from .render import build_report, find_studies
from .schema import StudyError, load_study, validate_study

__all__ = ["StudyError", "build_report", "find_studies", "load_study", "validate_study"]
