"""datathon: the computing environment of a clinical-data hackathon, from one file."""

__version__ = "0.1.0"
