"""First-order optimizers with Keras 3 update formulas, on numpy arrays.

An optimizer updates a list of parameter arrays in place from a parallel
list of gradients::

    opt = Adam(learning_rate=1e-3, global_clipnorm=1.0)
    opt.update(model.trainable_weights, weight_grads)

Its slot arrays (momenta, second moments) are created on the first
``update`` with the shapes and dtypes of the parameters. ``get_state()``
returns a deep copy of everything that changes during training and
``set_state()`` restores it, so a training loop can roll back after a
failure or when early stopping restores the best epoch.

Gradient clipping follows Keras: at most one of ``clipnorm`` (each array's
L2 norm), ``global_clipnorm`` (the L2 norm of all arrays together) and
``clipvalue`` (element-wise) may be set; it is applied before the update.

The same optimizers update CUDA device arrays (the device-resident fit of
the estimators, see :meth:`numrnn.Sequential.resident`): when ``update``
receives device parameters, the slots live on the device, the clipping and
the update run as CUDA kernels with the same formulas, and device
gradients are clipped in place. :meth:`Optimizer.resident` moves existing
slots to the device for a fit and back to host arrays at its end.
"""

import copy
from contextlib import contextmanager

import numpy as np

from numrnn.layers.base import on_device

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_gradients", "get"]


def clip_gradients(grads, *, clipnorm=None, global_clipnorm=None, clipvalue=None):
    """Return clipped copies of ``grads`` (the inputs are left unchanged).

    Parameters
    ----------
    grads : list of ndarray
        Gradients.
    clipnorm : float, optional
        Rescale each array whose L2 norm exceeds ``clipnorm`` to norm ``clipnorm``.
    global_clipnorm : float, optional
        Rescale all arrays by the same factor so that their joint L2 norm is
        at most ``global_clipnorm``.
    clipvalue : float, optional
        Clip every element to ``[-clipvalue, clipvalue]``.

    Returns
    -------
    list of ndarray
        The clipped gradients.

    Raises
    ------
    ValueError
        If more than one option is set, or one is not positive.
    """
    _check_clip_options(clipnorm, global_clipnorm, clipvalue)
    if clipnorm is not None:
        clipped = []
        for grad in grads:
            norm = float(np.sqrt(np.sum(np.square(grad, dtype=np.float64))))
            clipped.append(grad * (clipnorm / norm) if norm > clipnorm else grad.copy())
        return clipped
    if global_clipnorm is not None:
        total = float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads)))
        if total > global_clipnorm:
            return [g * (global_clipnorm / total) for g in grads]
        return [g.copy() for g in grads]
    if clipvalue is not None:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return [g.copy() for g in grads]


def _check_clip_options(clipnorm, global_clipnorm, clipvalue):
    options = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm, "clipvalue": clipvalue}
    given = {name: value for name, value in options.items() if value is not None}
    if len(given) > 1:
        raise ValueError(
            f"Only one of clipnorm, global_clipnorm and clipvalue can be set; got {given}."
        )
    for name, value in given.items():
        if not (isinstance(value, (int, float, np.number)) and value > 0):
            raise ValueError(f"{name} must be a positive number or None; got {value!r}.")


class Optimizer:
    """Base class: clipping, lazy slot creation, state save and restore.

    Parameters
    ----------
    learning_rate : float
        Step size.
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, see :func:`clip_gradients`. At most one may be set.
    """

    def __init__(self, learning_rate, *, clipnorm=None, global_clipnorm=None, clipvalue=None):
        if not (isinstance(learning_rate, (int, float, np.number)) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number; got {learning_rate!r}.")
        _check_clip_options(clipnorm, global_clipnorm, clipvalue)
        self.learning_rate = float(learning_rate)
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.iterations = 0
        self._slots = None

    # names of the per-parameter slot arrays, created as zeros on first update
    def _slot_names(self):
        return ()

    def _build(self, params):
        self._slots = {name: [np.zeros_like(p) for p in params] for name in self._slot_names()}

    def update(self, params, grads):
        """Apply one update step to ``params`` in place.

        Parameters
        ----------
        params : list of ndarray or of CUDA device arrays
            The parameter arrays, modified in place. Device parameters take
            device gradients and use device slots (see the module notes).
        grads : list of ndarray or of CUDA device arrays
            Gradients parallel to ``params``; device gradients are clipped
            in place.
        """
        if len(params) != len(grads):
            raise ValueError(
                f"Got {len(grads)} gradients for {len(params)} parameters; they must be parallel."
            )
        if params and on_device(params[0]):
            self._update_device(params, grads)
            return
        if self._slots and _first_slot_on_device(self._slots):
            self.slots_to_host()
        if self._slots is None:
            self._build(params)
        else:
            first_slots = next(iter(self._slots.values()), None)
            if first_slots is not None and [s.shape for s in first_slots] != [
                p.shape for p in params
            ]:
                raise ValueError(
                    "The parameters' shapes differ from those this optimizer was built "
                    "with; create a new optimizer for new parameters."
                )
        grads = clip_gradients(
            grads,
            clipnorm=self.clipnorm,
            global_clipnorm=self.global_clipnorm,
            clipvalue=self.clipvalue,
        )
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            if param.shape != grad.shape:
                raise ValueError(
                    f"Gradient {index} has shape {grad.shape} but its parameter has "
                    f"shape {param.shape}."
                )
            self._update_one(index, param, grad.astype(param.dtype, copy=False))
        self.iterations += 1

    def _update_one(self, index, param, grad):
        raise NotImplementedError

    # -- device path -----------------------------------------------------------
    def _update_device(self, params, grads):
        ops = _device_ops()
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            if tuple(param.shape) != tuple(grad.shape):
                raise ValueError(
                    f"Gradient {index} has shape {tuple(grad.shape)} but its parameter has "
                    f"shape {tuple(param.shape)}."
                )
        if self._slots is None:
            self._slots = {
                name: [ops.zeros(p.shape, p.dtype) for p in params] for name in self._slot_names()
            }
        else:
            first_slots = next(iter(self._slots.values()), None)
            if first_slots is not None and [tuple(s.shape) for s in first_slots] != [
                tuple(p.shape) for p in params
            ]:
                raise ValueError(
                    "The parameters' shapes differ from those this optimizer was built "
                    "with; create a new optimizer for new parameters."
                )
            self.slots_to_device()
        self._clip_device(grads, ops)
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            self._update_one_device(ops, index, param, grad)
        self.iterations += 1

    def _clip_device(self, grads, ops):
        """:func:`clip_gradients` on device gradients, in place."""
        if self.clipnorm is not None:
            sums = ops.zeros((len(grads),), grads[0].dtype)
            for index, grad in enumerate(grads):
                ops.sum_squares(grad, sums, index, accumulate=False)
                ops.clip_by_norm_(grad, sums, index, float(self.clipnorm))
        elif self.global_clipnorm is not None:
            sums = ops.zeros((1,), grads[0].dtype)
            for grad in grads:
                ops.sum_squares(grad, sums, 0, accumulate=True)
            for grad in grads:
                ops.clip_by_norm_(grad, sums, 0, float(self.global_clipnorm))
        elif self.clipvalue is not None:
            for grad in grads:
                ops.clip_by_value_(grad, float(self.clipvalue))

    def _update_one_device(self, ops, index, param, grad):
        raise NotImplementedError

    def _slots_on_device(self):
        return any(on_device(s) for slots in (self._slots or {}).values() for s in slots)

    def slots_to_device(self):
        """Move the slot arrays to the CUDA device (once; a no-op when there or unbuilt)."""
        if not self._slots:
            return
        backend = _device_backend()
        self._slots = {
            name: [s if on_device(s) else backend.to_device(s) for s in slots]
            for name, slots in self._slots.items()
        }

    def slots_to_host(self):
        """Move device slot arrays back to host arrays (a no-op when on the host)."""
        if not self._slots:
            return
        self._slots = {
            name: [s.copy_to_host() if on_device(s) else s for s in slots]
            for name, slots in self._slots.items()
        }

    @contextmanager
    def resident(self):
        """Context manager: slots on the device inside (created there on the
        first device ``update`` when unbuilt), host arrays again on exit (also
        on an exception), so that the optimizer pickles and saves."""
        try:
            self.slots_to_device()
            yield self
        finally:
            self.slots_to_host()

    def get_state(self):
        """Return a deep copy of the optimizer's mutable state.

        Device slots are copied on the device (nothing crosses to the host).

        Returns
        -------
        dict
            ``iterations``, ``learning_rate`` and the slot arrays.
        """
        return {
            "iterations": self.iterations,
            "learning_rate": self.learning_rate,
            "slots": _copy_slots(self._slots),
        }

    def set_state(self, state):
        """Restore a state returned by :meth:`get_state` (copied, not shared).

        Parameters
        ----------
        state : dict
            A state from :meth:`get_state`.
        """
        self.iterations = int(state["iterations"])
        self.learning_rate = float(state["learning_rate"])
        self._slots = _copy_slots(state["slots"])

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._slots is not None and self._slots_on_device():
            state["_slots"] = {
                name: [s.copy_to_host() if on_device(s) else s for s in slots]
                for name, slots in self._slots.items()
            }
        return state

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self.learning_rate})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Update rule (Keras 3), with velocity ``v`` starting at zero::

        momentum == 0:  w -= lr * g
        otherwise:      v = momentum * v - lr * g
                        w += v                         (nesterov=False)
                        w += momentum * v - lr * g     (nesterov=True)

    Parameters
    ----------
    learning_rate : float, default=0.01
        Step size.
    momentum : float, default=0.0
        Momentum factor in [0, 1].
    nesterov : bool, default=False
        Use Nesterov momentum.
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, see :func:`clip_gradients`.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        *,
        clipnorm=None,
        global_clipnorm=None,
        clipvalue=None,
    ):
        super().__init__(
            learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
        )
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must lie in [0, 1]; got {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _slot_names(self):
        return ("velocity",) if self.momentum != 0 else ()

    def _update_one_device(self, ops, index, param, grad):
        if self.momentum == 0:
            ops.sgd_update(param, grad, self.learning_rate)
        else:
            ops.sgd_momentum_update(
                param, grad, self._slots["velocity"][index], self.learning_rate,
                self.momentum, self.nesterov,
            )  # fmt: skip

    def _update_one(self, index, param, grad):
        lr = param.dtype.type(self.learning_rate)
        if self.momentum == 0:
            param -= lr * grad
            return
        momentum = param.dtype.type(self.momentum)
        velocity = self._slots["velocity"][index]
        velocity *= momentum
        velocity -= lr * grad
        if self.nesterov:
            param += momentum * velocity - lr * grad
        else:
            param += velocity


class Adam(Optimizer):
    """Adam, with Keras 3's bias correction folded into the step size.

    Update rule at step ``t`` (1-based), moments ``m``, ``v`` starting at zero::

        step = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m += (g - m) * (1 - beta_1)
        v += (g**2 - v) * (1 - beta_2)
        w -= step * m / (sqrt(v) + epsilon)

    Parameters
    ----------
    learning_rate : float, default=0.001
        Step size.
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of the first and second moment estimates.
    epsilon : float, default=1e-7
        Added to ``sqrt(v)`` for stability (Keras' default).
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, see :func:`clip_gradients`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        *,
        clipnorm=None,
        global_clipnorm=None,
        clipvalue=None,
    ):
        super().__init__(
            learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
        )
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not (0.0 <= value < 1.0):
                raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def _slot_names(self):
        return ("m", "v")

    def _step_size(self):
        step = self.iterations + 1
        return self.learning_rate * np.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)

    def _update_one_device(self, ops, index, param, grad):
        ops.adam_update(
            param, grad, self._slots["m"][index], self._slots["v"][index], self._step_size(),
            self.beta_1, self.beta_2, self.epsilon,
        )  # fmt: skip

    def _update_one(self, index, param, grad):
        dtype = param.dtype.type
        step = self.iterations + 1
        step_size = dtype(
            self.learning_rate * np.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)
        )
        m = self._slots["m"][index]
        v = self._slots["v"][index]
        m += (grad - m) * dtype(1.0 - self.beta_1)
        v += (grad * grad - v) * dtype(1.0 - self.beta_2)
        param -= step_size * m / (np.sqrt(v) + dtype(self.epsilon))


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering (Keras 3 formulas).

    Update rule, slots starting at zero::

        ms = rho * ms + (1 - rho) * g**2
        centered:  mg = rho * mg + (1 - rho) * g;  denom = ms - mg**2 + epsilon
        otherwise: denom = ms + epsilon
        increment = lr * g / sqrt(denom)
        momentum > 0: mom = momentum * mom + increment; w -= mom
        otherwise:    w -= increment

    Parameters
    ----------
    learning_rate : float, default=0.001
        Step size.
    rho : float, default=0.9
        Decay rate of the mean square.
    momentum : float, default=0.0
        Momentum factor.
    epsilon : float, default=1e-7
        Added inside the square root for stability.
    centered : bool, default=False
        Normalise by the estimated variance instead of the mean square.
    clipnorm, global_clipnorm, clipvalue : float, optional
        Gradient clipping, see :func:`clip_gradients`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        momentum=0.0,
        epsilon=1e-7,
        centered=False,
        *,
        clipnorm=None,
        global_clipnorm=None,
        clipvalue=None,
    ):
        super().__init__(
            learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
        )
        if not (0.0 <= rho < 1.0):
            raise ValueError(f"rho must lie in [0, 1); got {rho!r}.")
        if not (0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must lie in [0, 1]; got {momentum!r}.")
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)

    def _slot_names(self):
        names = ["mean_square"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("mean_grad")
        return tuple(names)

    def _update_one_device(self, ops, index, param, grad):
        ops.rmsprop_update(
            param, grad, self._slots["mean_square"][index],
            self._slots["mean_grad"][index] if self.centered else None,
            self._slots["momentum"][index] if self.momentum > 0 else None,
            self.learning_rate, self.rho, self.epsilon, self.momentum, self.centered,
        )  # fmt: skip

    def _update_one(self, index, param, grad):
        dtype = param.dtype.type
        rho = dtype(self.rho)
        mean_square = self._slots["mean_square"][index]
        mean_square *= rho
        mean_square += dtype(1.0 - self.rho) * grad * grad
        if self.centered:
            mean_grad = self._slots["mean_grad"][index]
            mean_grad *= rho
            mean_grad += dtype(1.0 - self.rho) * grad
            denominator = mean_square - mean_grad * mean_grad + dtype(self.epsilon)
        else:
            denominator = mean_square + dtype(self.epsilon)
        increment = dtype(self.learning_rate) * grad / np.sqrt(denominator)
        if self.momentum > 0:
            momentum_buffer = self._slots["momentum"][index]
            momentum_buffer *= dtype(self.momentum)
            momentum_buffer += increment
            param -= momentum_buffer
        else:
            param -= increment


def _first_slot_on_device(slots):
    """Whether the slots live on the device (they move all together)."""
    for arrays in slots.values():
        return bool(arrays) and on_device(arrays[0])
    return False


def _device_backend():
    from numrnn.kernels import get_backend

    return get_backend("cuda")


def _device_ops():
    return _device_backend().ops


def _copy_slots(slots):
    """A deep copy of a slots dict; device arrays are copied on the device."""
    if slots is None:
        return None
    if not any(on_device(s) for arrays in slots.values() for s in arrays):
        return copy.deepcopy(slots)
    ops = _device_ops()
    return {
        name: [ops.copy_new(s) if on_device(s) else np.array(s, copy=True) for s in arrays]
        for name, arrays in slots.items()
    }


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get(name, **kwargs):
    """Create an optimizer from its name.

    Parameters
    ----------
    name : {'sgd', 'adam', 'rmsprop'}
        Optimizer name (case-insensitive).
    **kwargs
        Constructor arguments.

    Returns
    -------
    Optimizer
        A new optimizer.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer {name!r}: expected one of {', '.join(sorted(_OPTIMIZERS))}."
        )
    return _OPTIMIZERS[key](**kwargs)
