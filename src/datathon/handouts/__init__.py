from datathon.handouts.build import HandoutFiles, build_handouts

__all__ = ["HandoutFiles", "build_handouts"]
