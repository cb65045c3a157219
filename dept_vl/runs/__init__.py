"""What a run is on disk: its recipe (``model:`` + ``train:``, the packaged recipes in ``recipes/``) and its
directory (``RunDir``), and ``SavedModel``: what ``--checkpoint`` points at. Training writes runs; inference,
serving and the benches read them."""
