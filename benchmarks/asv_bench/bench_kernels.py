"""Forward and backward time of each cell's kernels.

Measured through the layers' ``_forward``/``_backward`` protocol (the
kernels plus the layer's buffer handling, without the public call's input
checks), over a grid of (batch, timesteps, units) and both dtypes. Inputs
have 16 features.
"""

from .common import CELLS, DTYPES, cotangent_like, layer_class, sequences

SHAPES = ["16x50x16", "64x100x64", "128x50x128"]
N_FEATURES = 16


def _parse(shape):
    return tuple(int(v) for v in shape.split("x"))


class _Base:
    params = (CELLS, SHAPES, DTYPES)
    param_names = ["cell", "batch x timesteps x units", "dtype"]

    def _build(self, cell, shape, dtype):
        batch, steps, units = _parse(shape)
        self.x = sequences(batch, steps, N_FEATURES, dtype)
        self.layer = layer_class(cell)(units, return_sequences=True, seed=0, dtype=dtype)
        self.layer.build(self.x.shape)


class Forward(_Base):
    """``layer._forward``: input projection, time loop, caches; and the same
    pass for outputs only, as calls and predictions run it (the LSTM's
    kernel without caches; the GRU and SimpleRNN run their one kernel)."""

    def setup(self, cell, shape, dtype):
        from numrnn.layers.base import forward_only

        self.forward_only = forward_only
        self._build(cell, shape, dtype)
        self.layer._forward(self.x, None, None, True)  # compiles or loads the kernels
        self.time_forward_outputs_only(cell, shape, dtype)

    def time_forward(self, cell, shape, dtype):
        self.layer._forward(self.x, None, None, True)

    def time_forward_outputs_only(self, cell, shape, dtype):
        with self.forward_only():
            self.layer._forward(self.x, None, None, False)


class Backward(_Base):
    """``layer._backward`` on one forward cache: BPTT and the weight gradients."""

    def setup(self, cell, shape, dtype):
        self._build(cell, shape, dtype)
        outputs, self.cache = self.layer._forward(self.x, None, None, True)
        self.cotangents = [cotangent_like(outputs[0])]
        self.layer._backward(self.cache, self.cotangents)  # warm-up

    def time_backward(self, cell, shape, dtype):
        self.layer._backward(self.cache, self.cotangents)


class BatchThreads:
    """LSTM forward + backward with 1 or 2 threads: the batch-parallel row
    blocks of ``numrnn.kernels.cpu._threads`` (the thread budget follows the
    BLAS limit, set here with threadpoolctl)."""

    params = ([1, 2], ["32x100x32", "64x200x64", "256x50x16"])
    param_names = ["threads", "batch x timesteps x units"]

    def setup(self, threads, shape):
        from threadpoolctl import threadpool_limits

        from numrnn.kernels.cpu import _threads

        batch, steps, units = _parse(shape)
        self.x = sequences(batch, steps, N_FEATURES, "float32")
        self.layer = layer_class("lstm")(units, return_sequences=True, seed=0, dtype="float32")
        self.layer.build(self.x.shape)
        self.cotangents = None
        _threads._blas_controller()  # load the BLAS the kernels use before limiting it
        self.limiter = threadpool_limits(limits=threads, user_api="blas")
        self.time_train(threads, shape)  # compiles or loads the kernels

    def teardown(self, threads, shape):
        self.limiter.restore_original_limits()

    def time_train(self, threads, shape):
        outputs, cache = self.layer._forward(self.x, None, None, True)
        if self.cotangents is None:
            self.cotangents = [cotangent_like(outputs[0])]
        self.layer._backward(cache, self.cotangents)


class BlockRunner:
    """Where the row blocks of a split call run: numba's OpenMP threads or
    the Python thread pool (``NUMRNN_BLOCK_THREADS``), 2 threads. The LSTM
    forward + backward, and the hand-off alone: a split call of a compiled
    kernel that does nothing."""

    params = (["numba", "python"], ["32x100x32", "256x50x16"])
    param_names = ["runner", "batch x timesteps x units"]

    def setup(self, runner, shape):
        import numpy as np
        from numba import njit
        from threadpoolctl import threadpool_limits

        from numrnn.kernels.cpu import _threads

        self.threads = _threads
        self.previous_runner = _threads.RUNNER
        _threads.RUNNER = runner
        if runner == "numba" and not _threads.native_ready():
            _threads.RUNNER = self.previous_runner
            raise NotImplementedError("numba's OpenMP layer is not available here")
        batch, steps, units = _parse(shape)
        self.x = sequences(batch, steps, N_FEATURES, "float32")
        self.layer = layer_class("lstm")(units, return_sequences=True, seed=0, dtype="float32")
        self.layer.build(self.x.shape)
        self.cotangents = None
        _threads._blas_controller()
        self.limiter = threadpool_limits(limits=2, user_api="blas")

        @njit(nogil=True)
        def nothing(rows, out):
            pass

        rows = np.zeros((batch, 1), dtype="float32")
        self.noop_call = (nothing, (rows, np.zeros(batch, dtype="float32")), (0, 1), ())
        self.noop_shape = (batch, _threads.MIN_WORK, 1)  # enough work to split
        self.time_train(runner, shape)  # compiles or loads the kernels
        self.time_split_noop(runner, shape)

    def teardown(self, runner, shape):
        self.limiter.restore_original_limits()
        self.threads.RUNNER = self.previous_runner

    def time_train(self, runner, shape):
        outputs, cache = self.layer._forward(self.x, None, None, True)
        if self.cotangents is None:
            self.cotangents = [cotangent_like(outputs[0])]
        self.layer._backward(cache, self.cotangents)

    def time_split_noop(self, runner, shape):
        kernel, args, sliced, summed = self.noop_call
        self.threads.call_in_blocks(kernel, args, sliced, summed, self.noop_shape)


class _OneThreadSteps:
    # per-step products on one BLAS thread; a timed call runs 20 steps, as
    # a short sequence would

    def _hold_one_thread(self, product, shape):
        from threadpoolctl import threadpool_limits

        from numrnn.kernels.cpu import _threads

        _threads._blas_controller()
        self.limiter = threadpool_limits(limits=1, user_api="blas")
        self.time_steps(product, shape)  # compiles

    def teardown(self, product, shape):
        self.limiter.restore_original_limits()

    def time_steps(self, product, shape):
        self.steps(*self.operands, 20)


class StepProducts(_OneThreadSteps):
    """One step's recurrent product ``(B, U) @ (U, 4U)``, float32, one
    thread: the BLAS call the kernels make elsewhere against the register
    tiles over packed panels that the LSTM kernels run with AVX-512
    (``numrnn.kernels.cpu._packed``; the tiles run on any CPU here)."""

    params = (["blas", "panels"], ["16x64", "32x128", "32x256"])
    param_names = ["product", "batch x units"]

    def setup(self, product, shape):
        import numpy as np
        from numba import njit

        from numrnn.kernels.cpu import _packed
        from numrnn.kernels.cpu._common import gemm

        batch, units = _parse(shape)
        rng = np.random.default_rng(0)
        self.state = rng.standard_normal((batch, units), dtype=np.float32)
        self.weights = rng.standard_normal((units, 4 * units), dtype=np.float32)
        self.gates = np.zeros((batch, 4 * units), dtype=np.float32)
        self.panels = _packed.pack_panels(self.weights, False)

        @njit
        def blas_steps(a, w, c, n):
            for _ in range(n):
                gemm(a, False, w, False, c, True)

        @njit
        def panel_steps(a, panels, c, n):
            for _ in range(n):
                _packed.packed_product(a, panels, c)

        self.steps = blas_steps if product == "blas" else panel_steps
        operand = self.weights if product == "blas" else self.panels
        self.operands = (self.state, operand, self.gates)
        self._hold_one_thread(product, shape)


class StateGradient(_OneThreadSteps):
    """The LSTM backward's per-step state gradient ``dh += d_gates @ R.T``
    (``(B, 4U) @ (4U, U)``), float32, one thread: the BLAS against the
    register tiles over packed panels of ``R.T``, full panels (64 units) or
    half panels (32 and 96 units; ``_packed.packed_product_t``)."""

    params = (["blas", "panels"], ["16x32", "16x96", "32x64"])
    param_names = ["product", "batch x units"]

    def setup(self, product, shape):
        import numpy as np
        from numba import njit

        from numrnn.kernels.cpu import _packed
        from numrnn.kernels.cpu._common import recurrent_state_grad

        batch, units = _parse(shape)
        rng = np.random.default_rng(0)
        self.d_gates = rng.standard_normal((batch, 4 * units), dtype=np.float32)
        self.weights = rng.standard_normal((units, 4 * units), dtype=np.float32)
        self.dh = np.zeros((batch, units), dtype=np.float32)
        self.ones = np.ones((batch, units), dtype=np.float32)
        if product == "blas":
            self.panels = _packed.no_panels(self.weights)
        else:
            self.panels = _packed.pack_panels(self.weights, True)

        @njit
        def steps(d, w, panels, ones, dh, n):
            for _ in range(n):
                recurrent_state_grad(d, w, panels, ones, True, dh, dh)

        self.steps = steps
        self.operands = (self.d_gates, self.weights, self.panels, self.ones, self.dh)
        self._hold_one_thread(product, shape)


class BackwardCells:
    """The LSTM's tanh/sigmoid backward cells of 20 steps, float32 (explicit
    vector code, ``numrnn.kernels.cpu._lanes``): rows x units per step."""

    params = [["16x32", "64x8", "128x16", "16x50"]]
    param_names = ["batch x units"]

    def setup(self, shape):
        import numpy as np
        from numba import njit

        from numrnn.kernels.cpu import lstm

        batch, units = _parse(shape)
        steps = 20
        rng = np.random.default_rng(0)

        def rows(*shape):
            return rng.uniform(0.1, 0.9, size=shape).astype(np.float32)

        self.arrays = (
            rows(batch, steps, units), np.zeros((batch, units), np.float32), rows(batch, units),
            rows(batch, units), rows(steps, batch, 4 * units), rows(steps, batch, units),
            rows(steps, batch, units), np.ones((batch, steps), dtype=bool),
            np.zeros((steps, batch, 4 * units), np.float32),
        )  # fmt: skip

        @njit
        def cells(d_out, carry, dh, dc, gates, c_prev, c_act, mask, d_gates):
            for t in range(gates.shape[0]):
                lstm._cells_backward_fast(
                    d_out, carry, dh, dc, gates[t], c_prev[t], c_act[t], mask, d_gates[t], t, t
                )

        self.cells = cells
        self.time_cells(shape)  # compiles

    def time_cells(self, shape):
        self.cells(*self.arrays)
