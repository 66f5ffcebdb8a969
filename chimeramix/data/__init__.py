"""Data: sources -> per-class subsets (split manifests) -> device-resident batches."""

from .imageset import ImageSet
from .sources import Source, describe_sources, known_names, open_source
from .split import Split, make_split

__all__ = ["ImageSet", "Source", "Split", "describe_sources", "known_names", "make_split", "open_source"]
