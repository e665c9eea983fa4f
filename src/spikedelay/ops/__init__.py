"""Fused kernels: LIF/LI, masked BatchNorm (→ LIF), the Gaussian delay kernel, the DFT convolution,
the per-channel delay, the time-stepped (recurrent, adaptive) layer.

Each op is a public module (``lif``, ``batchnorm``, ``gaussian``, ``delay_conv``,
``channel_delay``, ``recurrent``) holding its autograd Function (forward + hand-written
backward; ``recurrent``'s backends each hold theirs) and one private module per backend with
the same function names: ``_<op>_numba`` (CPU), ``_<op>_triton`` (CUDA; CPU under
``TRITON_INTERPRET=1``) and ``_<op>_torch`` (any device, the reference). Which one runs is
chosen in one place, :mod:`spikedelay.ops.dispatch`, from the tensor's device, or forced for the
whole process with ``SPIKEDELAY_KERNELS=auto|numba|triton|torch``. Layer code never checks
devices.

Adding a kernel (say a recurrent LIF, op ``"rlif"``):

1. write ``ops/_rlif_torch.py`` with the functions the op needs (e.g. ``rlif_forward``,
   ``rlif_backward``, taking and returning torch tensors), and the same names in
   ``ops/_rlif_numba.py`` and/or ``ops/_rlif_triton.py``;
2. register them, one line each, at the end of :mod:`spikedelay.ops.dispatch`::

       register("rlif", "numba", "spikedelay.ops._rlif_numba")
       register("rlif", "triton", "spikedelay.ops._rlif_triton")
       register("rlif", "torch", "spikedelay.ops._rlif_torch", dtypes=None)

3. in the op's autograd Function, ``impl = dispatch.select("rlif", x)`` in ``forward``, keep
   ``ctx.impl = impl`` and call ``ctx.impl.rlif_backward(...)`` in ``backward``;
4. test every backend against an independent reference (``tests/ops/``; the ``kernel_backend``
   fixture runs a test under each backend that runs on CPU, Triton interpreted).

A backend without a module for an op runs the op's ``torch`` module when forced. Nothing in
``ops`` imports the rest of the package.
"""
