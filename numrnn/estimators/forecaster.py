"""RNNForecaster: recursive multi-step forecasting of one long series (or a few aligned ones)."""

import numbers
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from numrnn.estimators import _stateful
from numrnn.estimators._base import _CELLS, _as_units, _is_bool, _is_int
from numrnn.estimators.regressor import RNNRegressor

_SCALINGS = ("standard", "minmax", None)
_MISSING = ("raise", "mask")


# --------------------------------------------------------------------------
# Time index helpers
# --------------------------------------------------------------------------


def _describe_index(index, name):
    """Return ``(kind, freq)`` of a regular time index, or raise saying how to fix it.

    ``kind`` is 'datetime', 'period' or 'range'; ``freq`` a pandas offset for
    the first two and the integer step for 'range'.
    """
    if isinstance(index, pd.MultiIndex):
        raise ValueError(
            f"{name} must be one series indexed by time; got a MultiIndex. Forecast each "
            "series separately, or put aligned series side by side as columns."
        )
    if index.has_duplicates:
        raise ValueError(f"The index of {name} has duplicate labels; one row per step is needed.")
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq
        if freq is None and len(index) >= 3:
            with warnings.catch_warnings():
                # pandas 3 announces that infer_freq will return an offset; both work below
                warnings.simplefilter("ignore", DeprecationWarning)
                inferred = pd.infer_freq(index)
            freq = None if inferred is None else pd.tseries.frequencies.to_offset(inferred)
        if freq is None:
            raise ValueError(
                f"The DatetimeIndex of {name} has no frequency and none can be inferred "
                "(its timestamps are irregular, unsorted or fewer than 3), so the forecast "
                f"index cannot continue it. Set one, e.g. {name} = {name}.asfreq('D') (or "
                "'W-SAT', 'MS', 'h', ...): absent steps become NaN, which "
                "RNNForecaster(missing='mask') accepts."
            )
        return "datetime", freq
    if isinstance(index, pd.PeriodIndex):
        if len(index) > 1:
            expected = pd.period_range(index[0], periods=len(index), freq=index.freq)
            if not index.equals(expected):
                raise ValueError(
                    f"The PeriodIndex of {name} is not a regular sequence of periods "
                    f"(unsorted or with gaps). Reindex it over the full range, e.g. {name} = "
                    f"{name}.reindex(pd.period_range({name}.index[0], {name}.index[-1], "
                    f"freq='{index.freqstr}')); absent steps become NaN, which "
                    "RNNForecaster(missing='mask') accepts."
                )
        return "period", index.freq
    if isinstance(index, pd.RangeIndex):
        return "range", int(index.step)
    if pd.api.types.is_integer_dtype(index.dtype):
        values = np.asarray(index, dtype=np.int64)
        steps = np.diff(values)
        if len(values) == 1 or (steps[0] > 0 and (steps == steps[0]).all()):
            return "range", int(steps[0]) if len(values) > 1 else 1
        raise ValueError(
            f"The integer index of {name} is not evenly spaced and increasing; use "
            f"{name}.reset_index(drop=True) for a RangeIndex."
        )
    raise TypeError(
        f"{name} must be indexed by a DatetimeIndex (with a frequency), a PeriodIndex or a "
        f"RangeIndex; got {type(index).__name__}. Set a time index, e.g. "
        f"{name}.index = pd.date_range('2020-01-01', periods=len({name}), freq='D'), or "
        f"use {name}.reset_index(drop=True)."
    )


def _advance(kind, freq, label, steps):
    """The labels ``steps`` (ints >= 1) steps after ``label``, as a pandas Index."""
    steps = np.asarray(steps, dtype=np.int64)
    horizon = int(steps.max())
    contiguous = np.array_equal(steps, np.arange(1, horizon + 1))
    if kind == "datetime":
        full = pd.date_range(start=label, periods=horizon + 1, freq=freq)[1:]
    elif kind == "period":
        full = pd.period_range(start=label + 1, periods=horizon, freq=freq)
    else:
        full = pd.RangeIndex(label + freq, label + freq * (horizon + 1), freq)
    return full if contiguous else full[steps - 1]


# --------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------


def _numeric_2d(values, name):
    values = np.asarray(values)
    if values.dtype.kind == "O":
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold numbers only: {exc}") from exc
    if values.dtype.kind == "c":
        raise ValueError(f"Complex data not supported in {name}; pass real numbers.")
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers only; got dtype {values.dtype}.")
    values = values.astype(np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(
            f"{name} must be 1-D (n_timesteps,) or 2-D (n_timesteps, n_columns); got shape "
            f"{values.shape}."
        )
    if values.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least 1 is required.")
    if np.isinf(values).any():
        raise ValueError(f"{name} contains infinity; pass finite values.")
    return values


def _frame_values(frame, name):
    """Float values of a numeric DataFrame (pandas NA becomes NaN)."""
    non_numeric = [
        str(column)
        for column, dtype in frame.dtypes.items()
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype)
    ]
    if non_numeric:
        raise TypeError(
            f"Columns {non_numeric} of {name} are not numeric (real numbers); convert them "
            "or leave them out."
        )
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _fill_missing(values, previous=None):
    """Fill NaN by linear interpolation between observed steps, column by column.

    Before the first observation the first observed value is used, after
    the last one the last. ``previous`` (one row of filled values) is an
    observed step just before ``values`` (for updates).
    """
    if previous is not None:
        values = np.vstack([previous[None, :], values])
    filled = values.copy()
    positions = np.arange(len(values))
    for column in range(values.shape[1]):
        known = ~np.isnan(values[:, column])
        if not known.all():
            filled[:, column] = np.interp(positions, positions[known], values[known, column])
    return filled[1:] if previous is not None else filled


def _lag_inputs(z_filled, lags, start):
    """Inputs ``[z[t - l] for l in lags]`` for ``t`` in ``[start, len(z_filled))``."""
    n_rows = len(z_filled) - start
    columns = [z_filled[start - lag : start - lag + n_rows] for lag in lags]
    return np.concatenate(columns, axis=1)


class RNNForecaster(BaseEstimator):
    """Recurrent-network forecaster for one long series (or a few aligned ones).

    At each time step ``t`` the network reads lagged values of the target,
    ``y[t - l]`` for ``l`` in ``lags`` (optionally differenced, then
    scaled), and the exogenous features ``X[t]``, and predicts ``y[t]``. It
    trains with the stateful chunked engine of :class:`RNNRegressor`
    (``stateful=True``): truncated backpropagation through time over chunks
    of ``chunk_length`` steps, the recurrent state carrying over from chunk
    to chunk. ``predict`` then forecasts recursively from the state reached
    at the end of the series, feeding each forecast back as the next lag,
    and returns pandas data whose index continues the series.

    Parameters
    ----------
    cell : {'lstm', 'gru', 'simple'}, default='lstm'
        Recurrent cell.
    units : int or tuple of int, default=(32,)
        Width of each stacked recurrent layer.
    lags : int or sequence of int, default=1
        Lagged target values fed to the network at each step: an int ``p``
        means lags ``1..p``; a sequence lists the lags (e.g. ``(1, 52)``).
    differencing : int or None, default=None
        Model ``y[t] - y[t - d]`` instead of ``y[t]``: 1 for first
        differences, the season length for seasonal differences. Forecasts
        are integrated back to the level of ``y``.
    scaling : {'standard', 'minmax', None}, default='standard'
        Scaling of the (differenced) target, fitted on the training series
        and reverted at predict: zero mean and unit variance, or the range
        ``[-1, 1]``. Exogenous features are always standardised.
    missing : {'raise', 'mask'}, default='raise'
        What to do with missing values (NaN) in ``y``. 'raise' rejects them
        with a ``ValueError``. 'mask' excludes the missing steps from the
        loss (and from early-stopping scores) and, where a missing value is
        needed as a lagged input, uses linear interpolation between the
        neighbouring observations (the nearest observation at the ends). A
        step counts as missing when any target column is NaN. Exogenous
        ``X`` may never hold NaN.
    chunk_length : int, default=100
        Steps per chunk of truncated backpropagation through time.
    head_units : tuple of int, default=()
        Dense layers between the recurrent body and the output layer.
    head_activation : str, default='relu'
        Activation of the ``head_units`` layers.
    dropout, recurrent_dropout : float, default=0.0
        Dropout rates of the recurrent layers (training only).
    loss : {'mse', 'mae', 'huber'}, default='mse'
        Training loss on the scaled target.
    max_iter : int, default=100
        Epochs (passes over the series).
    learning_rate_init : float, default=0.001
        Step size of the optimizer.
    optimizer : {'adam', 'sgd', 'rmsprop'}, default='adam'
        Update rule.
    alpha : float, default=0.0
        L2 penalty on the weights (not the biases).
    clipnorm : float or None, default=None
        Clip each gradient array to this norm.
    early_stopping : bool, default=False
        Hold out the last ``validation_fraction`` of the series, stop when
        its score stops improving and keep the best weights.
    validation_fraction : float, default=0.1
        Fraction of the steps held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.
    tol : float, default=1e-4
        Minimum improvement.
    random_state : int, numpy Generator or RandomState, default=None
        Seeds the initial weights and dropout: the same int gives the same
        forecasts.
    verbose : int, default=0
        Print training progress.
    dtype : {None, 'float32', 'float64'}, default=None
        Float dtype of the network (None: ``numrnn.config.floatx()``).
    device : {'cpu', 'cuda', 'auto'}, default='cpu'
        Where the recurrent kernels run; see :class:`RNNRegressor`.

    Attributes
    ----------
    regressor_ : RNNRegressor
        The fitted stateful network on the transformed series (its
        ``loss_curve_``, ``n_iter_`` and ``model_`` are there).
    lags_ : tuple of int
        The lags used.
    cutoff_ : label
        Index label of the last observed step (moves with ``update``).
    freq_ : pandas offset or int
        Frequency of the index (the step of a RangeIndex).
    index_kind_ : {'datetime', 'period', 'range'}
        The kind of index forecasts get.
    target_names_ : list
        Column names of ``y`` (the name of a Series, possibly None).
    n_exog_features_ : int
        Number of exogenous features (0 without ``X``).
    exog_names_ : list or None
        Columns of an exogenous DataFrame.
    n_observations_ : int
        Steps seen by ``fit`` and ``update``.

    See Also
    --------
    RNNRegressor : ``stateful=True`` trains on long series with arbitrary
        inputs and per-step targets.

    Notes
    -----
    ``fit(y, X=None)`` takes the target first, as forecasting libraries
    do, so scikit-learn's ``check_estimator`` (which calls ``fit(X, y)``
    with tabular data) does not apply. ``get_params``/``set_params``,
    ``sklearn.base.clone`` and pickling work as for any estimator.

    ``y`` is a pandas Series (one series) or DataFrame (a few aligned
    series, forecast jointly, one output each) indexed by a DatetimeIndex
    with a frequency, a PeriodIndex or a RangeIndex (or a 1-D/2-D array,
    read as indexed by a RangeIndex). After ``fit`` the network runs once
    more over the whole series in inference mode, so that forecasts start
    from the state the final weights reach at the end of the history.
    ``predict`` leaves that state unchanged; ``update`` moves it forward.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from numrnn import RNNForecaster
    >>> index = pd.date_range("2024-01-01", periods=200, freq="D")
    >>> y = pd.Series(np.sin(np.arange(200) / 5.0), index=index)
    >>> f = RNNForecaster(units=8, lags=2, max_iter=5, random_state=0).fit(y)
    >>> f.predict(3).index[0]
    Timestamp('2024-07-19 00:00:00')
    """

    def __init__(
        self,
        *,
        cell="lstm",
        units=(32,),
        lags=1,
        differencing=None,
        scaling="standard",
        missing="raise",
        chunk_length=100,
        head_units=(),
        head_activation="relu",
        dropout=0.0,
        recurrent_dropout=0.0,
        loss="mse",
        max_iter=100,
        learning_rate_init=0.001,
        optimizer="adam",
        alpha=0.0,
        clipnorm=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
        dtype=None,
        device="cpu",
    ):
        self.cell = cell
        self.units = units
        self.lags = lags
        self.differencing = differencing
        self.scaling = scaling
        self.missing = missing
        self.chunk_length = chunk_length
        self.head_units = head_units
        self.head_activation = head_activation
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.loss = loss
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.optimizer = optimizer
        self.alpha = alpha
        self.clipnorm = clipnorm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    # ------------------------------------------------------------------
    # Hyperparameters
    # ------------------------------------------------------------------

    def _check_params(self):
        """Validate the forecaster's own options; return (lags, d)."""
        if self.cell not in _CELLS:
            raise ValueError(
                f"Unknown cell {self.cell!r}: expected one of {', '.join(map(repr, _CELLS))}."
            )
        _as_units(self.units, "units", allow_empty=False)
        lags = self.lags
        if _is_int(lags):
            if lags < 1:
                raise ValueError(f"lags must be a positive int or a list of them; got {lags!r}.")
            lags = tuple(range(1, int(lags) + 1))
        else:
            try:
                lags = tuple(lags)
            except TypeError:
                raise ValueError(
                    f"lags must be a positive int or a list of positive ints; got {lags!r}."
                ) from None
            if not lags or not all(_is_int(lag) and lag >= 1 for lag in lags):
                raise ValueError(
                    f"lags must be a positive int or a list of positive ints; got {self.lags!r}."
                )
            if len(set(lags)) != len(lags):
                raise ValueError(f"lags must not repeat; got {self.lags!r}.")
            lags = tuple(int(lag) for lag in lags)
        d = self.differencing
        if d is not None and not (_is_int(d) and d >= 1):
            raise ValueError(f"differencing must be None or a positive int; got {d!r}.")
        if self.scaling not in _SCALINGS:
            raise ValueError(
                f"Unknown scaling {self.scaling!r}: expected 'standard', 'minmax' or None."
            )
        if self.missing not in _MISSING:
            raise ValueError(
                f"Unknown missing={self.missing!r}: expected 'raise' (reject NaN in y) or "
                "'mask' (leave missing steps out of the loss)."
            )
        return lags, 0 if d is None else int(d)

    def _make_regressor(self):
        return RNNRegressor(
            cell=self.cell,
            units=self.units,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            head_units=self.head_units,
            head_activation=self.head_activation,
            per_step=True,
            stateful=True,
            chunk_length=self.chunk_length,
            loss=self.loss,
            max_iter=self.max_iter,
            learning_rate_init=self.learning_rate_init,
            optimizer=self.optimizer,
            alpha=self.alpha,
            clipnorm=self.clipnorm,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            shuffle=False,
            random_state=self.random_state,
            verbose=self.verbose,
            dtype=self.dtype,
            device=self.device,
        )

    # ------------------------------------------------------------------
    # Input validation
    # ------------------------------------------------------------------

    def _read_target(self, y, name):
        """Values (T, k) with NaN, index or None, column names, whether it was a Series."""
        if y is None:
            raise ValueError(f"{name} is None; pass the observed series.")
        if isinstance(y, (pd.Series, pd.DataFrame)):
            is_series = isinstance(y, pd.Series)
            if is_series and not pd.api.types.is_numeric_dtype(y.dtype):
                raise TypeError(f"{name} must hold real numbers; got dtype {y.dtype}.")
            frame = y.to_frame() if is_series else y
            names = [y.name] if is_series else list(y.columns)
            values, index = _frame_values(frame, name), y.index
        else:
            if isinstance(y, (str, bytes)) or np.isscalar(y):
                raise TypeError(f"{name} must be a pandas Series/DataFrame or an array.")
            values, index, is_series = np.asarray(y), None, np.ndim(y) == 1
            names = [None] if is_series else list(range(np.shape(y)[1] if np.ndim(y) > 1 else 1))
        values = _numeric_2d(
            values.astype(np.float64) if values.dtype.kind == "b" else values, name
        )
        if len(values) == 0:
            raise ValueError(f"{name} has 0 steps; at least 1 is required.")
        missing = np.isnan(values).any(axis=1)
        if missing.any() and self.missing == "raise":
            where = index[np.argmax(missing)] if index is not None else int(np.argmax(missing))
            raise ValueError(
                f"{name} has {int(missing.sum())} missing value(s) (NaN), the first at "
                f"{where!r}. Fill them (e.g. {name}.interpolate()) or pass "
                "missing='mask' to RNNForecaster to leave those steps out of the loss."
            )
        return values, index, names, is_series

    def _read_exog(self, X, n_rows, index, name, fitting):
        """Exogenous features: a float (n_rows, n_exog) array (unscaled) and the columns."""
        if fitting:
            if X is None:
                return None, None
        elif self.n_exog_features_ == 0:
            if X is not None:
                raise ValueError(
                    f"{type(self).__name__} was fitted without exogenous features; pass "
                    f"{name}=None."
                )
            return None, None
        elif X is None:
            raise ValueError(
                f"{type(self).__name__} was fitted with {self.n_exog_features_} exogenous "
                f"feature(s) {self.exog_names_ or ''}; pass their values for the new steps "
                f"as {name}."
            )
        columns = None
        if isinstance(X, pd.Series):
            X = X.to_frame()
        if isinstance(X, pd.DataFrame):
            _frame_values(X, name)  # numeric columns only
            columns = list(X.columns)
            if not fitting and self.exog_names_ is not None:
                if set(map(str, columns)) != set(map(str, self.exog_names_)) or len(columns) != len(
                    self.exog_names_
                ):
                    raise ValueError(
                        f"The exogenous columns of {name}, {columns}, differ from those seen "
                        f"at fit, {self.exog_names_}."
                    )
                X = X[self.exog_names_]
            if index is not None and isinstance(X.index, type(index)):
                if fitting:
                    if not X.index.equals(index):
                        raise ValueError(
                            f"The index of {name} must equal the index of y (one row of "
                            "exogenous features per step)."
                        )
                else:
                    absent = index.difference(X.index)
                    if len(absent):
                        raise ValueError(
                            f"{name} has no row for {len(absent)} of the forecast steps, e.g. "
                            f"{absent[0]!r}; it must cover the steps {index[0]!r} to "
                            f"{index[-1]!r}."
                        )
                    X = X.loc[index]
            values = _frame_values(X, name)
        else:
            if isinstance(X, (str, bytes)) or np.isscalar(X):
                raise TypeError(f"{name} must be a pandas DataFrame or an array.")
            values = np.asarray(X)
        values = _numeric_2d(values, name)
        if np.isnan(values).any():
            raise ValueError(
                f"{name} contains NaN; exogenous features must be complete (fill them first)."
            )
        if not fitting and values.shape[1] != self.n_exog_features_:
            raise ValueError(
                f"{name} has {values.shape[1]} exogenous column(s) but "
                f"{type(self).__name__} was fitted with {self.n_exog_features_}."
            )
        if fitting and len(values) != n_rows:
            raise ValueError(
                f"{name} has {len(values)} rows but y has {n_rows}; pass one row of "
                "exogenous features per step."
            )
        if not fitting and len(values) < n_rows:
            raise ValueError(
                f"{name} has {len(values)} rows but {n_rows} step(s) need exogenous values."
            )
        return values[:n_rows], columns

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def fit(self, y, X=None):
        """Train on the series ``y`` (with optional exogenous features ``X``).

        Parameters
        ----------
        y : pandas Series or DataFrame, or array-like
            The series, ``(n_timesteps,)`` or ``(n_timesteps, n_series)``,
            indexed by a DatetimeIndex (with a frequency), a PeriodIndex or
            a RangeIndex; arrays are read as indexed ``0..T-1``. NaN only
            with ``missing='mask'``.
        X : pandas DataFrame or array-like of shape (n_timesteps, n_exog), default=None
            Exogenous features, one row per step of ``y`` (same index for
            pandas). ``X[t]`` is used to predict ``y[t]``, so forecasts need
            its future values.

        Returns
        -------
        self : RNNForecaster
            The fitted forecaster.
        """
        lags, d = self._check_params()
        values, index, names, is_series = self._read_target(y, "y")
        if index is None:
            index = pd.RangeIndex(len(values))
        kind, freq = _describe_index(index, "y")
        exog, exog_columns = self._read_exog(X, len(values), index, "X", fitting=True)
        start = d + max(lags)
        if len(values) < start + 2:
            raise ValueError(
                f"y has {len(values)} steps, too few for lags up to {max(lags)} and "
                f"differencing={self.differencing}: at least {start + 2} are needed."
            )
        observed = ~np.isnan(values).any(axis=1)
        if not observed.any():
            raise ValueError("y has no observed value (every step is NaN).")
        filled = _fill_missing(values)
        # targets: z[t] = y[t] - y_filled[t - d], NaN where y[t] is missing
        z_target = values[start:] - (filled[start - d : len(filled) - d] if d else 0.0)
        target_observed = observed[start:]
        if not target_observed.any():
            raise ValueError("Every target after the first lags is missing; nothing to train on.")
        counted = z_target[target_observed]
        if self.scaling == "standard":
            center, scale = counted.mean(axis=0), counted.std(axis=0)
        elif self.scaling == "minmax":
            low, high = counted.min(axis=0), counted.max(axis=0)
            center, scale = (high + low) / 2.0, (high - low) / 2.0
        else:
            center, scale = np.zeros(counted.shape[1]), np.ones(counted.shape[1])
        scale = np.where(scale > 0, scale, 1.0)
        exog_center = exog_scale = None
        if exog is not None:
            exog_center = exog.mean(axis=0)
            exog_scale = exog.std(axis=0)
            exog_scale = np.where(exog_scale > 0, exog_scale, 1.0)
        # nothing is assigned to self before the fit succeeded
        transform = _Transform(lags, d, center, scale, exog_center, exog_scale)
        inputs = transform.design(filled, transform.scale_exog(exog, start), start)
        targets = np.where(target_observed[:, None], transform.scale(z_target), 0.0)
        regressor = self._make_regressor()
        regressor._fit(inputs, targets, incremental=False, target_mask=target_observed[None])
        # forecasts start from the state the final weights reach at the end of the history
        regressor.reset_states()
        regressor.predict(inputs)

        self.regressor_ = regressor
        self.lags_ = lags
        self._transform = transform
        self.index_kind_ = kind
        self.freq_ = freq
        self.cutoff_ = index[-1]
        self.target_names_ = names
        self._target_is_series = is_series
        self.n_exog_features_ = 0 if exog is None else exog.shape[1]
        self.exog_names_ = exog_columns
        self.n_observations_ = len(values)
        self._y_tail = filled[-start:].copy()
        return self

    def update(self, y_new, X_new=None):
        """Advance the state with new observations, without refitting the weights.

        Parameters
        ----------
        y_new : pandas Series or DataFrame, or array-like
            The steps right after ``cutoff_`` (a pandas index must continue
            the fitted one; arrays are taken to be the next steps). NaN only
            with ``missing='mask'``.
        X_new : pandas DataFrame or array-like, default=None
            Exogenous features of those steps (required when fitted with
            exogenous features).

        Returns
        -------
        self : RNNForecaster
            The forecaster, whose state, ``cutoff_`` and lag history now end
            at the last new step.
        """
        check_is_fitted(self)
        values, index, names, _ = self._read_target(y_new, "y_new")
        if values.shape[1] != len(self.target_names_):
            raise ValueError(
                f"y_new has {values.shape[1]} column(s) but the forecaster was fitted on "
                f"{len(self.target_names_)}."
            )
        if index is not None and not self._target_is_series and names != self.target_names_:
            raise ValueError(
                f"The columns of y_new, {names}, differ from those seen at fit, "
                f"{self.target_names_}."
            )
        expected = _advance(
            self.index_kind_, self.freq_, self.cutoff_, np.arange(1, len(values) + 1)
        )
        if index is not None:
            if not index.equals(expected):
                raise ValueError(
                    f"y_new must continue the series: its index should start at "
                    f"{expected[0]!r} (one step after cutoff_={self.cutoff_!r}) and have "
                    f"frequency {self.freq_!r}; got {index[0]!r} ... {index[-1]!r}."
                )
        exog, _ = self._read_exog(X_new, len(values), expected, "X_new", fitting=False)
        filled = _fill_missing(values, previous=self._y_tail[-1])
        history = np.vstack([self._y_tail, filled])
        start = len(self._y_tail)
        transform = self._transform
        inputs = transform.design(history, transform.scale_exog(exog, 0), start)
        self.regressor_.predict(inputs)  # moves the state on
        self._y_tail = history[-start:].copy()
        self.cutoff_ = expected[-1]
        self.n_observations_ += len(values)
        return self

    def predict(self, fh, X=None):
        """Forecast ``fh`` steps ahead of ``cutoff_``, recursively.

        Parameters
        ----------
        fh : int or sequence of int
            The horizon: an int ``H`` means steps ``1..H``; a sequence lists
            the steps ahead (each >= 1, no repeats), e.g. ``[1, 4, 12]``.
        X : pandas DataFrame or array-like, default=None
            Future exogenous features for steps ``1..max(fh)`` (required,
            and only allowed, when fitted with exogenous features). A pandas
            ``X`` is aligned on the forecast index; an array's first
            ``max(fh)`` rows are used.

        Returns
        -------
        pandas Series or DataFrame
            The forecasts, a Series when ``y`` was a Series (or 1-D), else
            a DataFrame with ``y``'s columns, indexed by the steps after
            ``cutoff_``: a DatetimeIndex, PeriodIndex or RangeIndex that
            continues the series.

        Raises
        ------
        ValueError
            For a horizon below 1, or exogenous features that are missing,
            unexpected, too short or have other columns than at fit.
        """
        check_is_fitted(self)
        steps = self._check_horizon(fh)
        horizon = int(steps.max())
        future = _advance(self.index_kind_, self.freq_, self.cutoff_, np.arange(1, horizon + 1))
        exog, _ = self._read_exog(X, horizon, future, "X", fitting=False)
        transform = self._transform
        exog_scaled = transform.scale_exog(exog, 0)
        model = self.regressor_.model_
        saved = _stateful.model_states(model)
        d, lags = transform.d, np.asarray(transform.lags)
        n_history = len(self._y_tail)
        levels = np.empty((n_history + horizon, self._y_tail.shape[1]))
        levels[:n_history] = self._y_tail
        dtype = model.layers[0].dtype
        try:
            with _stateful.single_threaded_blas():
                for step in range(horizon):
                    t = n_history + step
                    # every lag at once, lag-major as in the design matrix
                    value = levels[t - lags]
                    if d:
                        value = value - levels[t - lags - d]
                    row = transform.scale(value).reshape(-1)
                    if exog_scaled is not None:
                        row = np.concatenate([row, exog_scaled[step]])
                    output = model(row.astype(dtype)[None, None, :])
                    z = transform.unscale(np.asarray(output, dtype=np.float64)[0, 0])
                    levels[t] = z + (levels[t - d] if d else 0.0)
        finally:
            _stateful.set_model_states(model, saved)
        forecasts = levels[n_history + steps - 1]
        index = _advance(self.index_kind_, self.freq_, self.cutoff_, steps)
        if self._target_is_series:
            return pd.Series(forecasts[:, 0], index=index, name=self.target_names_[0])
        return pd.DataFrame(forecasts, index=index, columns=self.target_names_)

    def _check_horizon(self, fh):
        if _is_bool(fh) or isinstance(fh, (str, bytes, float)):
            raise ValueError(f"fh must be an int >= 1 or a list of steps ahead; got {fh!r}.")
        if isinstance(fh, numbers.Integral):
            if fh < 1:
                raise ValueError(
                    f"The forecast horizon fh must be at least 1 step ahead; got {fh}."
                )
            return np.arange(1, int(fh) + 1)
        try:
            steps = np.asarray(list(fh))
        except TypeError:
            raise ValueError(
                f"fh must be an int >= 1 or a list of steps ahead; got {fh!r}."
            ) from None
        if steps.ndim != 1 or len(steps) == 0 or steps.dtype.kind not in "iu":
            raise ValueError(f"fh must be an int >= 1 or a list of int steps ahead; got {fh!r}.")
        if (steps < 1).any():
            raise ValueError(
                f"Every step of the forecast horizon fh must be at least 1; got {steps.tolist()}."
            )
        if len(np.unique(steps)) != len(steps):
            raise ValueError(f"fh must not repeat steps; got {steps.tolist()}.")
        return steps.astype(np.int64)


class _Transform:
    """How a fitted forecaster turns the series into network inputs and back.

    ``z[t] = y[t] - y[t - d]`` (``z = y`` without differencing) is scaled
    to ``(z - center) / scale``; inputs at step ``t`` are the scaled
    ``z[t - l]`` for each lag ``l``, then the standardised exogenous row.
    """

    def __init__(self, lags, d, z_center, z_scale, exog_center, exog_scale):
        self.lags = lags
        self.d = d
        self.z_center = z_center
        self.z_scale = z_scale
        self.exog_center = exog_center
        self.exog_scale = exog_scale

    def scale(self, z):
        return (z - self.z_center) / self.z_scale

    def unscale(self, scaled):
        return scaled * self.z_scale + self.z_center

    def scale_exog(self, exog, start):
        if exog is None:
            return None
        return (exog[start:] - self.exog_center) / self.exog_scale

    def design(self, y_filled, exog_scaled, start):
        """Network inputs for the steps ``[start, len(y_filled))`` of a filled series."""
        d = self.d
        if d:
            z = np.full_like(y_filled, np.nan)
            z[d:] = y_filled[d:] - y_filled[:-d]
        else:
            z = y_filled
        inputs = _lag_inputs(self.scale(z), self.lags, start)
        if exog_scaled is not None:
            inputs = np.concatenate([inputs, exog_scaled], axis=1)
        return inputs
