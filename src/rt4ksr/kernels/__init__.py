"""Fused Triton inference for the deploy form of RTSRN (needs the ``triton`` package; GPU for speed).

``rt4ksr.kernels.network.TritonRTSRN(deploy_model)`` runs the network as one launch per layer (``conv.py``),
as persistent programs over 2-D tiles that keep their weights (``persistent.py``, kernels v2), or with the
blocks and the tail in groups that pass a tile between layers through a per-program scratch (``fused.py``).
Each LayerNorm runs in its producer's epilogue, and the global skip runs as a second convolution in the last
launch (``skip.py``). It supports the released design and its plain variants (simplified blocks without
channel attention, any activation, LayerNorm on or off, residual on or off, any global skip, no gate);
``supports(model)`` says why not. ``aot.py`` compiles the launches for an sm_90 GPU on a machine without
one. This package module imports nothing: importing a kernel module runs only that module.
"""
