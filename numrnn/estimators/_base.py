"""Shared machinery of the recurrent estimators: validation, model, training loop.

``_BaseRNN._fit`` serves ``fit`` (``max_iter`` epochs, optional early
stopping) and ``partial_fit`` (one epoch), as in scikit-learn's MLP. A fit
is a transaction: the estimator's attributes are restored if it raises,
except for a non-finite loss, where the last finite weights are kept and a
``ValueError`` explains what happened.

With ``stateful=True`` an epoch walks long series in chunks of
``chunk_length`` steps instead of mini-batches of sequences (see
:mod:`numrnn.estimators._stateful`).

When ``device`` resolves to CUDA and the network has a device path (see
:meth:`numrnn.Sequential.device_support`), the fit is device-resident: the
weights and the optimizer slots move to the GPU once at the start
(:meth:`numrnn.Sequential.resident`, :meth:`numrnn.optimizers.Optimizer.resident`)
and back once at the end; each batch uploads its inputs and downloads four
scalars (loss, squared norm, non-finite counts). Checkpoints and the
early-stopping best weights are device copies. Stateful fits and networks
without a device path keep the per-call transfers of the layers.
"""

import contextlib
import copy
import numbers
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from numrnn import _validation, config, losses, optimizers
from numrnn import layers as nr_layers
from numrnn.estimators import _stateful
from numrnn.kernels import check_device, resolve_device
from numrnn.models import Sequential
from numrnn.timeseries import chunk_bounds

_CELLS = {"lstm": nr_layers.LSTM, "gru": nr_layers.GRU, "simple": nr_layers.SimpleRNN}
_MERGE_MODES = ("concat", "sum", "mul", "ave")
_OPTIMIZERS = ("adam", "sgd", "rmsprop")
_HEAD_ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softplus", "hard_sigmoid")
_SEED_BOUND = 2**31
# inference batches hold about this many gate values (bounds memory for long sequences)
_PREDICT_BATCH_ELEMENTS = 2**24


class _NonFiniteLossError(ValueError):
    """Raised inside the epoch loop; the fit keeps the last finite weights."""


@dataclass
class _TrainingState:
    """Everything one fit call changes, committed to the estimator at the end."""

    model: Sequential
    optimizer: optimizers.Optimizer
    rng: np.random.Generator
    n_iter: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list | None = None
    best_validation_score: float | None = None
    best_loss: float = np.inf
    no_improvement_count: int = 0
    # numrnn.models.Residency during a device-resident fit, else None
    residency: object = None


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _is_number(value):
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _as_units(value, name, allow_empty):
    """Normalise an int or a sequence of ints to a tuple of positive ints."""
    if _is_int(value):
        value = (value,)
    try:
        units = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a tuple of ints; got {value!r}.") from None
    if not units and not allow_empty:
        raise ValueError(f"{name} must hold at least one layer size; got {value!r}.")
    if not all(_is_int(u) and u >= 1 for u in units):
        raise ValueError(f"{name} must hold positive ints; got {value!r}.")
    return tuple(int(u) for u in units)


def _iter_biases(layer):
    """Yield the bias arrays of a layer and of the layers it wraps."""
    bias = getattr(layer, "bias", None)
    if isinstance(bias, np.ndarray):
        yield bias
    for attribute in ("layer", "forward_layer", "backward_layer"):
        inner = getattr(layer, attribute, None)
        if isinstance(inner, nr_layers.Layer):
            yield from _iter_biases(inner)


def _penalized_flags(model):
    """True for the weights the L2 penalty applies to (every weight but biases)."""
    bias_ids = {id(b) for layer in model.layers for b in _iter_biases(layer)}
    return [id(w) not in bias_ids for w in model.trainable_weights]


def _copy_weights(state, weights=None):
    """Copies of the model's weights (or of ``weights``): device copies in a resident fit."""
    residency = state.residency
    if residency is None:
        return [w.copy() for w in (state.model.weights if weights is None else weights)]
    if weights is None:
        return residency.snapshot()
    return [residency.ops.copy_new(w) for w in weights]


def _restore_weights(state, weights):
    """Set the model's weights from :func:`_copy_weights` copies (on the device when resident)."""
    if state.residency is None:
        state.model.set_weights(weights)
    else:
        state.residency.restore(weights)


def _progress_bar(total, description, enabled):
    """A tqdm bar when verbose and tqdm is installed, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="epoch", file=sys.stderr, leave=True)


class _BaseRNN(BaseEstimator):
    """Base class of RNNClassifier and RNNRegressor (not for direct use)."""

    def __init__(
        self,
        *,
        cell="lstm",
        units=(32,),
        bidirectional=False,
        merge_mode="concat",
        dropout=0.0,
        recurrent_dropout=0.0,
        head_units=(),
        head_activation="relu",
        per_step="auto",
        stateful=False,
        chunk_length=100,
        batch_size="auto",
        max_iter=200,
        learning_rate_init=0.001,
        optimizer="adam",
        momentum=0.9,
        nesterovs_momentum=True,
        alpha=0.0001,
        clipnorm=None,
        clipvalue=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        warm_start=False,
        random_state=None,
        verbose=0,
        dtype=None,
        device="cpu",
        layers=None,
    ):
        self.cell = cell
        self.units = units
        self.bidirectional = bidirectional
        self.merge_mode = merge_mode
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.head_units = head_units
        self.head_activation = head_activation
        self.per_step = per_step
        self.stateful = stateful
        self.chunk_length = chunk_length
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.optimizer = optimizer
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device
        self.layers = layers

    # ------------------------------------------------------------------
    # Hyperparameters
    # ------------------------------------------------------------------

    def _check_hyperparameters(self):
        """Validate the hyperparameters; raise ValueError/TypeError naming the bad one."""
        # a missing GPU fails here, before any work
        resolve_device(check_device(self.device, "device"))
        if self.layers is None:
            if self.cell not in _CELLS:
                raise ValueError(
                    f"Unknown cell {self.cell!r}: expected one of {', '.join(map(repr, _CELLS))}."
                )
            _as_units(self.units, "units", allow_empty=False)
            if not _is_bool(self.bidirectional):
                raise ValueError(
                    f"bidirectional must be True or False; got {self.bidirectional!r}."
                )
            if self.merge_mode not in _MERGE_MODES:
                raise ValueError(
                    f"Unknown merge_mode {self.merge_mode!r}: expected one of "
                    f"{', '.join(map(repr, _MERGE_MODES))}."
                )
            for name in ("dropout", "recurrent_dropout"):
                value = getattr(self, name)
                if not (_is_number(value) and 0.0 <= value < 1.0):
                    raise ValueError(f"{name} must be a float in [0, 1); got {value!r}.")
            _as_units(self.head_units, "head_units", allow_empty=True)
            if self.head_activation not in _HEAD_ACTIVATIONS:
                raise ValueError(
                    f"Unknown head_activation {self.head_activation!r}: expected one of "
                    f"{', '.join(map(repr, _HEAD_ACTIVATIONS))}."
                )
        else:
            layer_list = self.layers if isinstance(self.layers, (list, tuple)) else None
            if not layer_list or not all(isinstance(la, nr_layers.Layer) for la in layer_list):
                raise TypeError(
                    "layers must be None or a non-empty list of numrnn layers "
                    f"(numrnn.layers.*); got {self.layers!r}."
                )
        if self.per_step not in ("auto", True, False) or (
            not _is_bool(self.per_step) and self.per_step != "auto"
        ):
            raise ValueError(f"per_step must be 'auto', True or False; got {self.per_step!r}.")
        if not _is_bool(self.stateful):
            raise ValueError(f"stateful must be True or False; got {self.stateful!r}.")
        if not (_is_int(self.chunk_length) and self.chunk_length >= 1):
            raise ValueError(f"chunk_length must be a positive int; got {self.chunk_length!r}.")
        if self.stateful:
            name = type(self).__name__
            if self.layers is None and self.bidirectional:
                raise ValueError(
                    f"{name}(stateful=True) cannot be bidirectional: the backward direction "
                    "would need the chunks that come later. Set bidirectional=False."
                )
            if self._per_step_option() is False:
                raise ValueError(
                    f"{name}(stateful=True) predicts one target per time step of long "
                    "series; per_step=False is not possible. Leave per_step='auto'."
                )
        if not (self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(
                f"batch_size must be 'auto' or a positive int; got {self.batch_size!r}."
            )
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if not (_is_number(self.learning_rate_init) and self.learning_rate_init > 0):
            raise ValueError(
                f"learning_rate_init must be a positive number; got {self.learning_rate_init!r}."
            )
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {self.optimizer!r}: expected one of "
                f"{', '.join(map(repr, _OPTIMIZERS))}."
            )
        if not (_is_number(self.momentum) and 0.0 <= self.momentum <= 1.0):
            raise ValueError(f"momentum must be a float in [0, 1]; got {self.momentum!r}.")
        for name in ("alpha", "tol"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number; got {value!r}.")
        for name in ("clipnorm", "clipvalue"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise ValueError(f"{name} must be None or a positive number; got {value!r}.")
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError("Set at most one of clipnorm and clipvalue.")
        if not (_is_number(self.validation_fraction) and 0.0 < self.validation_fraction < 1.0):
            raise ValueError(
                f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}."
            )
        for name in ("early_stopping", "shuffle", "warm_start", "nesterovs_momentum"):
            if not _is_bool(getattr(self, name)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}.")
        if not (_is_int(self.verbose) or _is_bool(self.verbose)) or self.verbose < 0:
            raise ValueError(f"verbose must be a non-negative int; got {self.verbose!r}.")
        try:
            config.resolve_dtype(self.dtype)
        except (TypeError, ValueError):
            raise ValueError(
                f"Unknown dtype {self.dtype!r}: expected None, 'float32' or 'float64'."
            ) from None
        self._check_task_hyperparameters()

    def _check_task_hyperparameters(self):
        """Hook for the classifier/regressor-specific options."""

    def _per_step_option(self):
        """``per_step`` as 'auto' or a Python bool (numpy bools included)."""
        return self.per_step if isinstance(self.per_step, str) else bool(self.per_step)

    def _make_rng(self):
        state = self.random_state
        if state is None or _is_int(state):
            return np.random.default_rng(state)
        if isinstance(state, np.random.Generator):
            return state
        if isinstance(state, np.random.RandomState):
            # a legacy RandomState (scikit-learn style): draw a seed from it
            return np.random.default_rng(int(state.randint(np.iinfo(np.int32).max)))
        raise ValueError(
            f"random_state must be None, an int, a numpy RandomState or Generator; got {state!r}."
        )

    def _make_optimizer(self):
        clipping = {"clipnorm": self.clipnorm, "clipvalue": self.clipvalue}
        if self.optimizer == "sgd":
            return optimizers.SGD(
                self.learning_rate_init,
                momentum=self.momentum,
                nesterov=self.nesterovs_momentum and self.momentum > 0,
                **clipping,
            )
        if self.optimizer == "rmsprop":
            return optimizers.RMSprop(self.learning_rate_init, **clipping)
        return optimizers.Adam(self.learning_rate_init, **clipping)

    def _build_model(self, n_features, n_outputs, per_step, rng, dtype, stateful=False):
        """The network: recurrent body, optional dense head, linear output layer."""

        def seed():
            return int(rng.integers(_SEED_BOUND))

        if self.layers is not None and stateful:
            body = _stateful.stateful_copy(list(self.layers), type(self).__name__)
        elif self.layers is not None:
            body = copy.deepcopy(list(self.layers))
        else:
            cell_class = _CELLS[self.cell]
            units = _as_units(self.units, "units", allow_empty=False)
            body = []
            for index, width in enumerate(units):
                recurrent = cell_class(
                    width,
                    dropout=float(self.dropout),
                    recurrent_dropout=float(self.recurrent_dropout),
                    return_sequences=per_step or index < len(units) - 1,
                    stateful=stateful,
                    seed=seed(),
                    dtype=dtype,
                )
                if self.bidirectional:
                    recurrent = nr_layers.Bidirectional(recurrent, merge_mode=self.merge_mode)
                body.append(recurrent)
            for width in _as_units(self.head_units, "head_units", allow_empty=True):
                dense = nr_layers.Dense(
                    width, activation=self.head_activation, seed=seed(), dtype=dtype
                )
                body.append(nr_layers.TimeDistributed(dense) if per_step else dense)
        output = nr_layers.Dense(n_outputs, seed=seed(), dtype=dtype)
        body.append(nr_layers.TimeDistributed(output) if per_step else output)
        model = Sequential(body, device=self.device)
        model.build((None, None, n_features))
        return model

    # ------------------------------------------------------------------
    # X validation
    # ------------------------------------------------------------------

    def _fit_dtype(self):
        return config.resolve_dtype(self.dtype)

    def _validate_X(self, X, *, reset, dtype):
        """Canonicalise X; with ``reset`` record n_features_in_ / feature names."""
        stateful = self.stateful if reset else getattr(self, "_stateful_fit", False)
        if stateful:
            return self._validate_series_X(X, reset=reset, dtype=dtype)
        kind = _validation.input_kind(X)
        name = type(self).__name__
        if reset:
            if kind == "tabular":
                X2d = validate_data(self, X, reset=True, dtype="numeric", ensure_all_finite=True)
                self._tabular_input = True
                return _validation.from_tabular(X2d, dtype=dtype)
            return self._record_features(_validation.check_sequences(X, dtype=dtype, kind=kind))
        if self._tabular_input:
            if kind != "tabular":
                raise ValueError(
                    f"{name} was fitted on a 2-D X: univariate sequences of "
                    f"{self.n_features_in_} time steps, one per column. Pass X in the same "
                    f"form (got {kind} input), or fit on 3-D X of shape (n, T, 1) or on a "
                    "list of sequences to predict sequences of other lengths."
                )
            X2d = validate_data(self, X, reset=False, dtype="numeric", ensure_all_finite=True)
            return _validation.from_tabular(X2d, dtype=dtype)
        data = _validation.check_sequences(X, dtype=dtype, kind=kind)
        detail = " (a 2-D X holds univariate sequences)" if kind == "tabular" else ""
        return self._check_features(data, detail)

    def _validate_series_X(self, X, *, reset, dtype):
        """Canonicalise the long series of a stateful fit or predict."""
        data = _validation.check_series(X, dtype=dtype)
        if reset:
            return self._record_features(data)
        return self._check_features(data)

    def _record_features(self, data):
        """Record ``n_features_in_`` and the feature names of a sequence fit; return ``data``."""
        self._tabular_input = False
        self.n_features_in_ = data.n_features
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return data

    def _check_features(self, data, detail=""):
        """``data`` after checking its feature count and names against the fit's."""
        if data.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {data.n_features} features per time step{detail}, but "
                f"{type(self).__name__} is expecting {self.n_features_in_} features as input."
            )
        fitted_names = getattr(self, "feature_names_in_", None)
        if (
            fitted_names is not None
            and data.feature_names is not None
            and not np.array_equal(fitted_names, data.feature_names)
        ):
            raise ValueError(
                "The feature names should match those that were passed during fit: "
                f"fitted with {list(fitted_names)}, got {list(data.feature_names)}."
            )
        return data

    def _check_targets(self, y, data, stateful):
        if stateful:
            return _validation.check_series_targets(y, data)
        return _validation.check_targets(y, data, per_step=self._per_step_option())

    # ------------------------------------------------------------------
    # Stateful (chunked) models
    # ------------------------------------------------------------------

    def reset_states(self):
        """Reset the recurrent states of a stateful estimator to zeros.

        The next ``predict`` (or ``score``) then starts the series afresh
        instead of continuing from where the last ``fit``, ``predict`` or
        ``score`` ended, and may take another number of parallel series.
        A no-op for non-stateful estimators (their states start at zero on
        every call anyway).

        Returns
        -------
        self : estimator
            The estimator, with zero states.
        """
        check_is_fitted(self)
        self.model_.reset_states()
        self._states_fresh = True
        return self

    def _match_streams(self, n_streams):
        """Make the fitted model's states fit ``n_streams`` parallel series for predict."""
        current = _stateful.n_streams(self.model_)
        if current is None or current == n_streams:
            return
        if not getattr(self, "_states_fresh", False):
            raise ValueError(
                f"This stateful {type(self).__name__} carries states for {current} parallel "
                f"series, but X holds {n_streams}. predict continues the series of the last "
                "fit or predict; call reset_states() first to start new series."
            )
        self.model_ = _stateful.with_fresh_states(self.model_)

    # ------------------------------------------------------------------
    # Task hooks (classifier / regressor)
    # ------------------------------------------------------------------

    def _prepare_targets(self, targets, sample_weight, *, incremental, classes, continuing):
        """Return (loss targets, entry weights, n_outputs); may set fitted attributes."""
        raise NotImplementedError

    def _loss_function(self):
        raise NotImplementedError

    def _score_outputs(self, outputs, loss_targets, step_mask, sample_weight):
        """Validation metric (higher is better) from raw model outputs."""
        raise NotImplementedError

    # ------------------------------------------------------------------
    # Fit
    # ------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, *, incremental=False, classes=None, target_mask=None):
        saved_attributes = dict(self.__dict__)
        try:
            error = self._fit_transaction(X, y, sample_weight, incremental, classes, target_mask)
        except BaseException:
            # a failed fit leaves the estimator exactly as it was
            self.__dict__.clear()
            self.__dict__.update(saved_attributes)
            raise
        if error is not None:
            raise error
        return self

    def _fit_transaction(self, X, y, sample_weight, incremental, classes, target_mask=None):
        self._check_hyperparameters()
        continuing = (incremental or self.warm_start) and hasattr(self, "model_")
        stateful = bool(self.stateful)
        if continuing and stateful != getattr(self, "_stateful_fit", False):
            raise ValueError(
                f"{type(self).__name__} was fitted with stateful="
                f"{getattr(self, '_stateful_fit', False)}; continuing it (warm_start or "
                f"partial_fit) with stateful={stateful} is not possible. Refit from scratch."
            )
        dtype = self.model_.layers[0].dtype if continuing else self._fit_dtype()
        data = self._validate_X(X, reset=not continuing, dtype=dtype)
        targets = self._check_targets(y, data, stateful)
        if target_mask is not None:
            # private: the forecaster's missing targets count in no loss or score
            target_mask = np.asarray(target_mask, dtype=bool).reshape(targets.values.shape[:2])
            targets.mask = target_mask if targets.mask is None else targets.mask & target_mask
            if not targets.mask.any():
                raise ValueError("Every target is missing; nothing to train on.")
            targets.values = _validation._fill_padding(targets.values, targets.mask)
        if continuing and targets.per_step != self.per_step_:
            kinds = {True: "per-step", False: "per-sequence"}
            raise ValueError(
                f"{type(self).__name__} was fitted with {kinds[self.per_step_]} targets; "
                f"got {kinds[targets.per_step]} targets."
            )
        weights = _validation.check_sample_weight(sample_weight, data.n_sequences)
        loss_targets, entry_weights, n_outputs = self._prepare_targets(
            targets, weights, incremental=incremental, classes=classes, continuing=continuing
        )
        if continuing:
            if n_outputs != self.n_outputs_:
                raise ValueError(
                    f"y has {n_outputs} outputs but {type(self).__name__} was fitted with "
                    f"{self.n_outputs_}."
                )
            model = copy.deepcopy(self.model_)
            if stateful and _stateful.n_streams(model) not in (None, data.n_sequences):
                # states reset at the start of every epoch anyway
                model = _stateful.with_fresh_states(model)
            state = _TrainingState(
                model=model,
                optimizer=copy.deepcopy(self._optimizer),
                rng=copy.deepcopy(self._rng),
                n_iter=self.n_iter_,
                loss_curve=list(self.loss_curve_),
                validation_scores=None
                if self.validation_scores_ is None
                else list(self.validation_scores_),
                best_validation_score=self.best_validation_score_,
                best_loss=self.best_loss_ if self.best_loss_ is not None else np.inf,
                # each fit() call gets the full n_iter_no_change patience
                no_improvement_count=self._no_improvement_count if incremental else 0,
            )
        else:
            rng = self._make_rng()
            state = _TrainingState(
                model=self._build_model(
                    data.n_features, n_outputs, targets.per_step, rng, dtype, stateful=stateful
                ),
                optimizer=self._make_optimizer(),
                rng=rng,
            )
        with (
            _stateful.single_threaded_blas() if stateful else contextlib.nullcontext(),
            self._device_residency(state, stateful),
        ):
            error = self._run_epochs(
                state, data, targets, loss_targets, entry_weights, weights, incremental
            )
        # commit
        self.model_ = state.model
        self._optimizer = state.optimizer
        self._rng = state.rng
        self.n_outputs_ = n_outputs
        self.per_step_ = targets.per_step
        self.n_iter_ = state.n_iter
        self.loss_curve_ = state.loss_curve
        self.validation_scores_ = state.validation_scores
        self.best_validation_score_ = state.best_validation_score
        self.best_loss_ = None if self._uses_validation(incremental) else state.best_loss
        self._no_improvement_count = state.no_improvement_count
        self._stateful_fit = stateful
        self._states_fresh = False
        return error

    @contextlib.contextmanager
    def _device_residency(self, state, stateful):
        """Keep weights and optimizer slots on the GPU for the fit, when possible.

        Taken when ``device`` resolves to CUDA, the fit is not stateful, the
        network has a device path and the loss a device version; otherwise a
        no-op (the layers then move data per call). On exit, also on an
        exception, the host weights and slots are current again.
        """
        if (
            stateful
            or resolve_device(self.device) != "cuda"
            or state.model.device_support() is not None
            or not losses.supports_device(self._loss_function())
        ):
            yield None
            return
        with state.model.resident() as residency, state.optimizer.resident():
            state.residency = residency
            try:
                yield residency
            finally:
                state.residency = None

    def _uses_validation(self, incremental):
        return self.early_stopping and not incremental

    def _batch_size(self, n_sequences):
        if self.batch_size == "auto":
            return min(32, n_sequences)
        return min(self.batch_size, n_sequences)

    def _split_validation(self, n_sequences, stratify, rng):
        """Indices of the training and validation sequences for early stopping."""
        indices = np.arange(n_sequences)
        split_seed = int(rng.integers(_SEED_BOUND))
        try:
            train, val = train_test_split(
                indices,
                test_size=self.validation_fraction,
                random_state=split_seed,
                stratify=stratify,
            )
        except ValueError:
            # too few members in a class to stratify: split without stratification
            train, val = train_test_split(
                indices, test_size=self.validation_fraction, random_state=split_seed
            )
        if len(val) < 2 or len(train) < 1:
            raise ValueError(
                f"The validation set is too small ({len(val)} sequence(s)) for early "
                "stopping. Increase validation_fraction or the number of sequences."
            )
        return np.sort(train), np.sort(val)

    def _stratify_labels(self, loss_targets, per_step):
        return None

    def _split_time(self, data, step_mask):
        """Hold out the last ``validation_fraction`` of the steps (stateful early stopping)."""
        n_steps = data.n_timesteps
        n_val = int(np.ceil(self.validation_fraction * n_steps))
        train_stop = n_steps - n_val
        counted = data.step_mask() if step_mask is None else step_mask
        n_val_counted = int(np.count_nonzero(counted[:, train_stop:]))
        if train_stop < 1 or n_val_counted < 2:
            raise ValueError(
                f"The validation part is too small for early stopping: the last "
                f"{n_val} of {n_steps} steps hold {n_val_counted} target(s). Increase "
                "validation_fraction or pass a longer series."
            )
        return _stateful.TimeSplit(train_stop=train_stop, n_steps=n_steps)

    def _run_epochs(self, state, data, targets, loss_targets, entry_weights, weights, incremental):
        """Train in place on ``state``; return an error to raise after committing, or None."""
        use_validation = self._uses_validation(incremental)
        stateful = bool(self.stateful)
        train_idx = np.arange(data.n_sequences)
        val_idx = None
        if use_validation:
            if stateful:
                val_idx = self._split_time(data, targets.mask)
            else:
                stratify = self._stratify_labels(loss_targets, targets.per_step)
                train_idx, val_idx = self._split_validation(data.n_sequences, stratify, state.rng)
            if state.validation_scores is None:
                state.validation_scores = []
                state.best_validation_score = -np.inf
        step_mask = targets.mask  # per-step targets: the steps that count
        model = state.model
        params = model.trainable_weights
        penalized = _penalized_flags(model)
        loss_fn = self._loss_function()
        batch_size = self._batch_size(len(train_idx))
        n_epochs = 1 if incremental else self.max_iter
        best_weights = _copy_weights(state) if use_validation else None
        bar = _progress_bar(n_epochs, type(self).__name__, bool(self.verbose))
        error = None
        stopped_early = False
        epochs_done = 0
        try:
            for _ in range(n_epochs):
                epoch_start = self._checkpoint(state, best_weights)
                try:
                    if stateful:
                        stop = data.n_timesteps if val_idx is None else val_idx.train_stop
                        epoch_loss = self._run_stateful_epoch(
                            state, data, stop, loss_targets, entry_weights, step_mask,
                            loss_fn, params, penalized,
                        )  # fmt: skip
                    else:
                        order = state.rng.permutation(train_idx) if self.shuffle else train_idx
                        epoch_loss = self._run_one_epoch(
                            state, data, order, batch_size, loss_targets, entry_weights,
                            step_mask, loss_fn, params, penalized,
                        )  # fmt: skip
                    state.n_iter += 1
                    state.loss_curve.append(epoch_loss)
                    message = self._track_progress(
                        state, data, targets, loss_targets, weights, val_idx, best_weights
                    )
                except KeyboardInterrupt:
                    self._restore_checkpoint(state, best_weights, epoch_start)
                    if epochs_done == 0:
                        raise  # nothing completed in this call: the fit is rolled back
                    warnings.warn(
                        f"Training interrupted after {epochs_done} epoch(s); keeping the "
                        "weights of the last completed epoch"
                        + (" with the best validation score." if use_validation else "."),
                        UserWarning,
                        stacklevel=4,
                    )
                    stopped_early = True
                    break
                except _NonFiniteLossError as exc:
                    error = exc
                    break
                epochs_done += 1
                self._report_epoch(bar, state, epoch_loss, use_validation)
                if message is not None and not incremental:
                    stopped_early = True
                    if self.verbose:
                        print(message)
                    break
        finally:
            if bar is not None:
                bar.close()
        if error is None and not incremental and not stopped_early and epochs_done == n_epochs:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                "the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )
        if use_validation and error is None:
            _restore_weights(state, best_weights)
        return error

    @staticmethod
    def _checkpoint(state, best_weights):
        """Everything an epoch changes, to undo an interrupted epoch."""
        return (
            _copy_weights(state),
            state.optimizer.get_state(),
            state.n_iter,
            len(state.loss_curve),
            None if state.validation_scores is None else len(state.validation_scores),
            state.best_validation_score,
            state.best_loss,
            state.no_improvement_count,
            None if best_weights is None else _copy_weights(state, best_weights),
        )

    @staticmethod
    def _restore_checkpoint(state, best_weights, checkpoint):
        weights, optimizer_state, n_iter, n_losses, n_scores, best_score, best_loss, count, best = (
            checkpoint
        )
        _restore_weights(state, weights)
        state.optimizer.set_state(optimizer_state)
        state.n_iter = n_iter
        del state.loss_curve[n_losses:]
        if n_scores is not None:
            del state.validation_scores[n_scores:]
        state.best_validation_score = best_score
        state.best_loss = best_loss
        state.no_improvement_count = count
        if best is not None:
            best_weights[:] = best

    def _report_epoch(self, bar, state, epoch_loss, use_validation):
        if bar is not None:
            postfix = {"loss": f"{epoch_loss:.4g}"}
            if use_validation:
                postfix["val_score"] = f"{state.validation_scores[-1]:.4g}"
            bar.set_postfix(postfix)
            bar.update(1)
        elif self.verbose:
            line = f"Iteration {state.n_iter}, loss = {epoch_loss:.8f}"
            if use_validation:
                line += f", validation score = {state.validation_scores[-1]:.6f}"
            print(line)

    def _track_progress(self, state, data, targets, loss_targets, weights, val_idx, best_weights):
        """Update best scores and the no-improvement count; return a stop message or None."""
        if isinstance(val_idx, _stateful.TimeSplit):
            # continue the states of the training pass over the held-out steps
            held_out = slice(val_idx.train_stop, val_idx.n_steps)
            x_mask = None if data.mask is None else data.mask[:, held_out]
            outputs = _stateful.predict_chunks(
                state.model, data.values[:, held_out], x_mask, self.chunk_length
            )
            val_mask = None if targets.mask is None else targets.mask[:, held_out]
            score = self._score_outputs(outputs, loss_targets[:, held_out], val_mask, weights)
        elif val_idx is not None:
            outputs = self._predict_outputs(state.model, data, val_idx)
            val_mask = None if targets.mask is None else targets.mask[val_idx]
            score = self._score_outputs(outputs, loss_targets[val_idx], val_mask, weights[val_idx])
        if val_idx is not None:
            state.validation_scores.append(score)
            if score < state.best_validation_score + self.tol:
                state.no_improvement_count += 1
            else:
                state.no_improvement_count = 0
            if score > state.best_validation_score:
                state.best_validation_score = score
                best_weights[:] = _copy_weights(state)
            criterion = "Validation score"
        else:
            loss = state.loss_curve[-1]
            if loss > state.best_loss - self.tol:
                state.no_improvement_count += 1
            else:
                state.no_improvement_count = 0
            state.best_loss = min(state.best_loss, loss)
            criterion = "Training loss"
        if state.no_improvement_count > self.n_iter_no_change:
            return (
                f"{criterion} did not improve more than tol={self.tol} for "
                f"{self.n_iter_no_change} consecutive epochs. Stopping."
            )
        return None

    def _run_one_epoch(
        self, state, data, order, batch_size, loss_targets, entry_weights, step_mask, loss_fn,
        params, penalized,
    ):  # fmt: skip
        """One pass over ``order`` in mini-batches; return the weighted mean batch loss."""
        total_loss = 0.0
        total_weight = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            x = data.values[batch]
            x_mask = None if data.mask is None else data.mask[batch]
            loss_mask = None if step_mask is None else step_mask[batch]
            batch_loss, batch_weight = self._train_step(
                state, x, x_mask, loss_targets[batch], entry_weights[batch], loss_mask,
                loss_fn, params, penalized,
            )  # fmt: skip
            total_loss += batch_loss * batch_weight
            total_weight += batch_weight
        return total_loss / total_weight if total_weight > 0 else 0.0

    def _run_stateful_epoch(
        self, state, data, stop, loss_targets, entry_weights, step_mask, loss_fn, params,
        penalized,
    ):  # fmt: skip
        """One pass over steps ``[0, stop)`` of all series, chunk by chunk (truncated BPTT).

        The states start at zero, each chunk starts from the states the
        previous chunk ended with (all series side by side as one batch), and
        one optimizer step is taken per chunk. Returns the weighted mean
        chunk loss.
        """
        state.model.reset_states()
        total_loss = 0.0
        total_weight = 0.0
        per_step_weights = entry_weights.ndim == 2
        for start, end in chunk_bounds(stop, self.chunk_length):
            x = data.values[:, start:end]
            x_mask = None if data.mask is None else data.mask[:, start:end]
            loss_mask = None if step_mask is None else step_mask[:, start:end]
            weights = entry_weights[:, start:end] if per_step_weights else entry_weights
            batch_loss, batch_weight = self._train_step(
                state, x, x_mask, loss_targets[:, start:end], weights, loss_mask,
                loss_fn, params, penalized,
            )  # fmt: skip
            if batch_weight == 0:
                # nothing to learn from here, but the states must still move on
                state.model(x, mask=x_mask, training=True)
            total_loss += batch_loss * batch_weight
            total_weight += batch_weight
        return total_loss / total_weight if total_weight > 0 else 0.0

    def _train_step(
        self, state, x, x_mask, targets, weights, loss_mask, loss_fn, params, penalized
    ):
        """One optimizer step on a batch; return (loss, total weight of the batch)."""
        scaling = self._batch_scaling(x, weights, loss_mask)
        if scaling is None:
            return 0.0, 0.0
        weight_sum, scaled_weights, penalty_scale = scaling
        if state.residency is not None:
            return self._train_step_device(
                state, x, x_mask, targets, loss_mask, loss_fn, penalized,
                weight_sum, scaled_weights, penalty_scale,
            )  # fmt: skip
        loss_holder = {}

        def cotangent(outputs):
            value, grad = loss_fn(targets, outputs, sample_weight=scaled_weights, mask=loss_mask)
            loss_holder["value"] = value
            return [grad]

        snapshot = [p.copy() for p in params]
        optimizer_state = state.optimizer.get_state()
        # overflow shows up as non-finite values, checked right below
        with np.errstate(over="ignore", invalid="ignore"):
            _, (grads, _, _) = state.model.value_and_vjp(
                x, cotangent, mask=x_mask, training=True, input_grad=False
            )
        loss = loss_holder["value"]
        if self.alpha > 0:
            squared_norm = 0.0
            for index, (weight, flag) in enumerate(zip(params, penalized, strict=True)):
                if flag:
                    squared_norm += float(np.sum(np.square(weight, dtype=np.float64)))
                    grads[index] = grads[index] + penalty_scale * weight
            loss += 0.5 * penalty_scale * squared_norm
        if not (np.isfinite(loss) and all(np.isfinite(g).all() for g in grads)):
            self._raise_non_finite(state, loss)
        state.optimizer.update(params, grads)
        if not all(np.isfinite(p).all() for p in params):
            for param, saved in zip(params, snapshot, strict=True):
                param[...] = saved
            state.optimizer.set_state(optimizer_state)
            self._raise_non_finite(state, np.nan)
        return loss, weight_sum

    def _batch_scaling(self, x, weights, loss_mask):
        """``(weight_sum, scaled entry weights, penalty scale)`` of a batch, or None
        when its weights sum to zero (nothing to learn)."""
        counted = np.ones(weights.shape, dtype=bool) if loss_mask is None else loss_mask
        if weights.ndim < counted.ndim:
            entry_weights = np.broadcast_to(weights[:, None], counted.shape)
        else:
            entry_weights = weights
        weight_sum = float(np.sum(entry_weights[counted]))
        if weight_sum <= 0:
            return None
        n_counted = int(np.count_nonzero(counted))
        # rescale so the loss is sum(w * l) / sum(w) (scikit-learn's convention)
        scaled_weights = weights * (n_counted / weight_sum)
        # L2 penalty per weighted sequence, as MLPClassifier's alpha / n_samples
        penalty_scale = self.alpha / (weight_sum * len(x) / n_counted)
        return weight_sum, scaled_weights, penalty_scale

    def _train_step_device(
        self, state, x, x_mask, targets, loss_mask, loss_fn, penalized, weight_sum,
        scaled_weights, penalty_scale,
    ):  # fmt: skip
        """:meth:`_train_step` of a device-resident fit.

        Uploads the batch (inputs, mask, targets, weights; the layers upload
        their dropout masks), computes loss, gradients, penalty and update
        on the device, and downloads one array of four scalars: the loss, the
        weights' squared norm (both summed in float64, stored in the model's
        dtype), and the numbers of non-finite gradient and updated weight
        values. A non-finite step restores the
        device weights and optimizer slots saved before it (device copies)
        and raises, as on the host.
        """
        residency = state.residency
        ops = residency.ops
        params = residency.twins
        dtype = state.model.layers[0].dtype
        scalars = ops.zeros((4,), dtype)
        snapshot = residency.step_snapshot()
        optimizer_state = state.optimizer.get_state()

        def cotangent(output):
            return losses.value_and_grad_on_device(
                loss_fn, targets, output, sample_weight=scaled_weights, mask=loss_mask,
                out=scalars, slot=0,
            )  # fmt: skip

        _, grads = residency.value_and_grads(
            residency.upload(x, dtype), cotangent, mask=residency.upload(x_mask), training=True
        )
        if self.alpha > 0:
            for param, grad, flag in zip(params, grads, penalized, strict=True):
                if flag:
                    ops.sum_squares(param, scalars, 1, accumulate=True)
                    ops.axpy_(grad, penalty_scale, param)
        for grad in grads:
            ops.count_nonfinite(grad, scalars, 2)
        state.optimizer.update(params, grads)
        for param in params:
            ops.count_nonfinite(param, scalars, 3)
        values = scalars.copy_to_host()
        loss = float(values[0])
        if self.alpha > 0:
            loss += 0.5 * penalty_scale * float(values[1])
        bad_gradient = not np.isfinite(loss) or values[2] > 0
        if bad_gradient or values[3] > 0:
            # as on the host: no update from a non-finite step
            residency.restore(snapshot)
            state.optimizer.set_state(optimizer_state)
            self._raise_non_finite(state, loss if bad_gradient else np.nan)
        return loss, weight_sum

    def _raise_non_finite(self, state, loss):
        raise _NonFiniteLossError(
            f"The training loss became non-finite ({loss}) during epoch {state.n_iter + 1}; "
            "training stopped and the weights of the last finite step were kept. Try a lower "
            "learning_rate_init, gradient clipping (clipnorm or clipvalue), or scaling X "
            "and y."
        )

    # ------------------------------------------------------------------
    # Predict
    # ------------------------------------------------------------------

    def _predict_outputs(self, model, data, indices=None):
        """Raw model outputs (float64) for the sequences ``indices`` of ``data``."""
        values = data.values if indices is None else data.values[indices]
        mask = data.mask
        if mask is not None and indices is not None:
            mask = mask[indices]
        widest = max((w.shape[-1] for w in model.trainable_weights), default=1)
        batch = max(1, _PREDICT_BATCH_ELEMENTS // max(1, values.shape[1] * widest))
        outputs = model.predict(values, batch_size=batch, mask=mask)
        return np.asarray(outputs, dtype=np.float64)

    def _forward(self, X):
        """Validate X and return (raw float64 outputs, SequenceData)."""
        check_is_fitted(self)
        data = self._validate_X(X, reset=False, dtype=self.model_.layers[0].dtype)
        if getattr(self, "_stateful_fit", False):
            self._match_streams(data.n_sequences)
            with _stateful.single_threaded_blas():
                outputs = _stateful.predict_chunks(
                    self.model_, data.values, data.mask, self.chunk_length
                )
            self._states_fresh = False
            return outputs, data
        return self._predict_outputs(self.model_, data), data

    def _scoring_entries(self, y, data, sample_weight):
        """True targets and weights of the entries that count, aligned with ``data``.

        Returns ``(truth, weights, mask)``: per-sequence targets with
        ``mask=None``, or for per-step models the real steps only, flattened,
        with the step ``mask`` used to select them.
        """
        if getattr(self, "_stateful_fit", False):
            targets = _validation.check_series_targets(y, data)
        else:
            targets = _validation.check_targets(y, data, per_step=self.per_step_)
        weights = None
        if sample_weight is not None:
            weights = _validation.check_sample_weight(sample_weight, data.n_sequences)
        if not targets.per_step:
            return targets.values, weights, None
        mask = data.step_mask()
        if weights is not None:
            weights = np.broadcast_to(weights[:, None], mask.shape)[mask]
        return targets.values[mask], weights, mask

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


# Parameter documentation shared by RNNClassifier and RNNRegressor.
_NETWORK_PARAMETERS_DOC = """\
cell : {'lstm', 'gru', 'simple'}, default='lstm'
        Recurrent cell of every recurrent layer.
    units : tuple of int, default=(32,)
        Width of each stacked recurrent layer (an int means one layer).
    bidirectional : bool, default=False
        Wrap each recurrent layer in ``Bidirectional``.
    merge_mode : {'concat', 'sum', 'mul', 'ave'}, default='concat'
        How ``Bidirectional`` combines the two directions.
    dropout : float, default=0.0
        Dropout rate on the inputs of each recurrent layer (training only).
    recurrent_dropout : float, default=0.0
        Dropout rate on the recurrent state (training only).
    head_units : tuple of int, default=()
        Widths of dense layers between the recurrent body and the output
        layer (applied at every step for per-step targets).
    head_activation : str, default='relu'
        Activation of the ``head_units`` layers: 'relu', 'tanh', 'sigmoid',
        'linear', 'softplus' or 'hard_sigmoid'.
    per_step : {'auto', True, False}, default='auto'
        Whether ``y`` holds one target per time step (sequence labelling)
        instead of one per sequence. 'auto' reads it from ``y``: 3-D arrays,
        lists of per-sequence arrays and pandas targets indexed like ``X``
        are per step; a 2-D array is per step when its second dimension
        equals the number of time steps of ``X`` (and that is more than 1).
        Per-step models return the whole sequence from the last recurrent
        layer and apply the head with ``TimeDistributed``; padded steps
        count neither in the loss nor in the scores.
    stateful : bool, default=False
        Train on long series with truncated backpropagation through time
        (see "Long series" in the notes): ``X`` is one long series or a few
        parallel ones, ``y`` holds one target per step, and each epoch walks
        the series in chunks of ``chunk_length`` steps while the recurrent
        states carry over from chunk to chunk.
    chunk_length : int, default=100
        Steps per chunk of a stateful fit (gradients stop at chunk
        boundaries; memory grows with the chunk, not with the series) and of
        a stateful predict (where it changes nothing but memory). Ignored
        unless ``stateful=True``.
    batch_size : int or 'auto', default='auto'
        Sequences per mini-batch; 'auto' means ``min(32, n_sequences)``.
        Ignored with ``stateful=True``, where all the parallel series form
        one batch.
    max_iter : int, default=200
        Maximum number of epochs (passes over the data) of ``fit``.
    learning_rate_init : float, default=0.001
        Step size of the optimizer.
    optimizer : {'adam', 'sgd', 'rmsprop'}, default='adam'
        Update rule (Keras formulas, see :mod:`numrnn.optimizers`).
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Use Nesterov momentum with 'sgd' (when ``momentum > 0``).
    alpha : float, default=0.0001
        Strength of the L2 penalty on all weights except biases,
        ``0.5 * alpha * ||W||^2`` divided by the (weighted) batch size, as in
        :class:`~sklearn.neural_network.MLPClassifier`.
    clipnorm : float, default=None
        Clip each gradient array to this L2 norm.
    clipvalue : float, default=None
        Clip each gradient element to ``[-clipvalue, clipvalue]``. At most
        one of ``clipnorm`` and ``clipvalue`` may be set.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the sequences (stratified for
        classification), stop when the validation score stops improving and
        restore the weights of the best epoch. Ignored by ``partial_fit``.
        With ``stateful=True`` the last ``validation_fraction`` of the time
        steps of every series is held out instead, and scored by continuing
        the states of each epoch's training pass.
    validation_fraction : float, default=0.1
        Fraction of sequences held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` (in validation
        score with early stopping, else in training loss) before stopping.
    tol : float, default=1e-4
        Minimum improvement.
    shuffle : bool, default=True
        Shuffle the sequences before each epoch (never with ``stateful=True``,
        where the chunks keep their order).
    warm_start : bool, default=False
        Continue from the fitted model (weights, optimizer state, random
        generator) on the next ``fit`` instead of starting afresh.
    random_state : int, numpy Generator or RandomState, default=None
        Seeds one ``numpy.random.Generator`` that draws the layers' seeds
        (weights and dropout masks), the shuffling and the validation split:
        two fits with the same int give bit-identical weights.
    verbose : int, default=0
        With 1 or more, show a progress bar per epoch (tqdm when installed,
        else a line per epoch) with the training loss and validation score.
    dtype : {None, 'float32', 'float64'}, default=None
        Float dtype of the network; None means ``numrnn.config.floatx()``
        at fit time.
    device : {'cpu', 'cuda', 'auto'}, default='cpu'
        Where the recurrent kernels run (set on every recurrent layer of the
        network, user-given ``layers`` included). ``'cuda'`` needs the
        ``cuda`` extra (numba-cuda) and an NVIDIA GPU and raises
        :class:`numrnn.kernels.DeviceUnavailableError` at fit otherwise;
        ``'auto'`` uses the GPU when one is present and the CPU otherwise.
        On CUDA the fit is device-resident: weights, gradients and optimizer
        state stay on the GPU for the whole fit (Dense layers, loss and
        optimizer run there too), and only the batches go up and a few
        scalars per batch come back. Stateful fits and user-given ``layers``
        with a layer that has no device path (``Embedding``, ``Masking``,
        custom layers) run only the recurrent kernels on the GPU, moving
        weights and activations once per layer call.
    layers : list of numrnn layers, default=None
        Escape hatch: the network body, deep-copied at each fresh fit. The
        estimator appends its output layer (a linear ``Dense`` with one unit
        per output, wrapped in ``TimeDistributed`` for per-step targets).
        ``cell``, ``units``, ``bidirectional``, ``merge_mode``, ``dropout``,
        ``recurrent_dropout``, ``head_units`` and ``head_activation`` are then
        ignored."""

_FITTED_ATTRIBUTES_DOC = """\
n_features_in_ : int
        Features per time step seen during fit; for a 2-D ``X``
        (univariate sequences given as columns, as scikit-learn sees tabular
        data) the number of columns, which ``predict`` then requires.
    feature_names_in_ : ndarray of str
        Names of the features (the DataFrame's columns), when they are all
        strings.
    n_outputs_ : int
        Number of units of the output layer.
    per_step_ : bool
        Whether the model was fitted with per-step targets.
    n_iter_ : int
        Number of epochs run (over all calls with ``warm_start`` or
        ``partial_fit``).
    loss_curve_ : list of float
        Training loss (penalty included) of each epoch.
    best_loss_ : float or None
        Lowest training loss; None with early stopping.
    validation_scores_ : list of float or None
        Validation score of each epoch with early stopping, else None.
    best_validation_score_ : float or None
        Best validation score with early stopping, else None.
    model_ : numrnn.Sequential
        The fitted network, usable on its own (it outputs raw values:
        logits for the classifier)."""

_INPUT_NOTES_DOC = """\
    ``X`` can be a 3-D array ``(n_sequences, n_timesteps, n_features)``, a
    2-D array ``(n_sequences, n_timesteps)`` of univariate sequences, a list
    of ``(length_i, n_features)`` (or ``(length_i,)``) arrays of different
    lengths, padded at the end and masked inside, or a pandas DataFrame
    indexed by a ``(sequence id, time)`` MultiIndex. Per-step predictions
    come back in the same form: arrays, a list of arrays (one per sequence,
    padding removed) or a pandas object indexed like ``X``. Per-sequence
    predictions are arrays; for pandas ``X`` they follow the order in which
    the sequence ids first appear, and a pandas ``y`` indexed by sequence id
    is aligned by id.

    **Long series** (``stateful=True``). ``X`` is one long series, a 1-D
    array or a Series (univariate), a 2-D array ``(n_timesteps,
    n_features)`` or a DataFrame indexed by time (note: *not* a batch of
    univariate sequences, as a 2-D ``X`` is otherwise), or several parallel
    series: a 3-D array ``(n_series, n_timesteps, n_features)``, a list of
    arrays of different lengths or a DataFrame indexed by ``(series id,
    time)``. ``y`` holds one target per step, aligned with ``X``. Each epoch
    resets the states to zero and walks the series in chunks of
    ``chunk_length`` steps; series ``i`` of chunk ``k + 1`` continues from
    the states series ``i`` reached at the end of chunk ``k``, gradients stop
    at chunk boundaries (truncated backpropagation through time), and one
    optimizer step is taken per chunk. Shorter series are padded at the end
    and masked: their padded steps change neither the loss nor the states.
    ``predict`` and ``score`` continue from the states where the last
    ``fit``, ``predict`` or ``score`` ended (the end of the training
    series after ``fit``, as in Keras) and move them on; call
    :meth:`reset_states` to start from zero, for example to predict over
    the training history again or over another number of series. Chunked
    prediction gives the same values as one pass over the whole series.
    Bidirectional layers cannot be stateful.

    A fit that raises leaves a fitted estimator exactly as it was. Ctrl-C
    during ``fit`` keeps the weights of the last completed epoch (the best
    one with early stopping) and returns with a warning. A non-finite loss
    stops training with a ``ValueError`` and keeps the last finite weights."""


def _fill_shared_docs(template):
    """Insert the shared parameter, attribute and notes sections into a docstring."""
    return (
        template.replace("<network parameters>", _NETWORK_PARAMETERS_DOC)
        .replace("<fitted attributes>", _FITTED_ATTRIBUTES_DOC)
        .replace("<input notes>", _INPUT_NOTES_DOC)
    )
