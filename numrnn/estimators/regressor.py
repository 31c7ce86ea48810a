"""RNNRegressor: regression on sequences, per sequence or per time step."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from numrnn import _validation, losses
from numrnn.estimators._base import (
    _BaseRNN,
    _fill_shared_docs,
)

_LOSSES = {
    "mse": losses.mean_squared_error,
    "squared_error": losses.mean_squared_error,
    "mae": losses.mean_absolute_error,
    "absolute_error": losses.mean_absolute_error,
    "huber": losses.huber,
}


class RNNRegressor(RegressorMixin, _BaseRNN):
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
        loss="mse",
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
        super().__init__(
            cell=cell,
            units=units,
            bidirectional=bidirectional,
            merge_mode=merge_mode,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            head_units=head_units,
            head_activation=head_activation,
            per_step=per_step,
            stateful=stateful,
            chunk_length=chunk_length,
            batch_size=batch_size,
            max_iter=max_iter,
            learning_rate_init=learning_rate_init,
            optimizer=optimizer,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            alpha=alpha,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            shuffle=shuffle,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
            dtype=dtype,
            device=device,
            layers=layers,
        )
        self.loss = loss

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the network to sequences ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences (see the class notes for the accepted forms). With
            ``stateful=True``: one long series, ``(n_timesteps,
            n_features)`` or a Series/DataFrame indexed by time, or several
            parallel ones (3-D array, list of arrays, ``(series id, time)``
            frame), with one target per step in ``y``.
        y : array-like, list of array-like or pandas object
            Targets per sequence, ``(n_sequences,)`` or ``(n_sequences,
            n_outputs)``, or per step, ``(n_sequences, n_timesteps[,
            n_outputs])`` (a list of arrays for ragged ``X``, a pandas
            object indexed like a pandas ``X``).
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights; the loss is ``sum(w * l) / sum(w)``.

        Returns
        -------
        self : RNNRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.
        y : array-like, list of array-like or pandas object
            Targets, per sequence or per step.
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights.

        Returns
        -------
        self : RNNRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets (float64).

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.

        Returns
        -------
        ndarray of shape (n_sequences,) or (n_sequences, n_outputs), or per step
            The shape of ``y`` at fit. Per-step models return ``(n_sequences,
            n_timesteps[, n_outputs])`` for array input, a list of arrays for
            ragged input and a pandas object indexed like a pandas ``X``.
        """
        outputs, data = self._forward(X)
        if self._single_output_column:
            outputs = outputs[..., 0]
        if self.per_step_:
            return _validation.format_step_output(outputs, data)
        return outputs

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 (over real steps for per-step models).

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.
        y : array-like, list of array-like or pandas object
            True targets, in the form given to ``fit``.
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights (each step of a sequence gets its weight).

        Returns
        -------
        float
            R^2, averaged uniformly over outputs.
        """
        outputs, data = self._forward(X)
        truth, weights, mask = self._scoring_entries(y, data, sample_weight)
        predicted = outputs if mask is None else outputs[mask]
        truth = np.asarray(truth, dtype=np.float64)
        if truth.ndim == predicted.ndim - 1:
            predicted = predicted[..., 0]
        return float(r2_score(truth, predicted, sample_weight=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------
    # Hooks of the training loop
    # ------------------------------------------------------------------

    def _check_task_hyperparameters(self):
        if self.loss not in _LOSSES:
            raise ValueError(
                f"Unknown loss {self.loss!r}: expected one of {', '.join(map(repr, _LOSSES))}."
            )

    def _prepare_targets(self, targets, sample_weight, *, incremental, classes, continuing):
        values = targets.values
        if values.dtype.kind not in "biuf":
            try:
                values = values.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{type(self).__name__} needs numeric targets: {exc}") from exc
        values = values.astype(np.float64)
        counted = values[targets.mask] if targets.mask is not None else values
        if not np.isfinite(counted).all():
            problem = "NaN" if np.isnan(counted).any() else "infinity"
            raise ValueError(f"Input y contains {problem}.")
        target_ndim = 2 if targets.per_step else 1
        self._single_output_column = values.ndim == target_ndim
        if self._single_output_column:
            values = values[..., None]
        return values, sample_weight, values.shape[-1]

    def _loss_function(self):
        return _LOSSES[self.loss]

    def _score_outputs(self, outputs, loss_targets, step_mask, sample_weight):
        if outputs.ndim == 2:
            return float(r2_score(loss_targets, outputs, sample_weight=sample_weight))
        mask = step_mask if step_mask is not None else np.ones(outputs.shape[:2], dtype=bool)
        weights = np.broadcast_to(sample_weight[:, None], mask.shape)[mask]
        return float(r2_score(loss_targets[mask], outputs[mask], sample_weight=weights))


RNNRegressor.__doc__ = _fill_shared_docs(
    """Recurrent-network regressor (LSTM, GRU or SimpleRNN) for sequences.

    Predicts one value (or vector) per sequence, or one per time step. The
    output layer is linear.

    Parameters
    ----------
    <network parameters>
    loss : {'mse', 'mae', 'huber'}, default='mse'
        Training loss (also 'squared_error' and 'absolute_error'); 'huber'
        uses ``delta=1``.

    Attributes
    ----------
    <fitted attributes>

    See Also
    --------
    RNNClassifier : The classification counterpart.

    Notes
    -----
<input notes>

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn import RNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 12, 2))
    >>> y = X[:, :, 0].mean(axis=1)
    >>> reg = RNNRegressor(units=(8,), max_iter=30, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """
)
