"""The names of the exportable views, in a module light enough for the command line's parser (building the
parser must not import torch: the app's splash comes first)."""
EXPORT_VIEWS: tuple[str, ...] = ("overlay", "heads", "rollout", "flow", "relevance", "pos-embed", "windows",
                                 "stats", "anatomy", "scramble", "figure")
