from datathon.handouts.build import SECTION_BUILDERS, HandoutFiles, build_handouts

__all__ = ["SECTION_BUILDERS", "HandoutFiles", "build_handouts"]
