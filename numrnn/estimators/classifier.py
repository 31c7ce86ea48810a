"""RNNClassifier: sequence classification and sequence labelling."""

import warnings

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from numrnn import _validation, losses
from numrnn.estimators._base import (
    _BaseRNN,
    _fill_shared_docs,
)


class RNNClassifier(ClassifierMixin, _BaseRNN):
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
        class_weight=None,
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
        self.class_weight = class_weight

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the network to sequences ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences (see the class notes for the accepted forms). With
            ``stateful=True``: one long series, ``(n_timesteps,
            n_features)`` or a Series/DataFrame indexed by time, or several
            parallel ones (3-D array, list of arrays, ``(series id, time)``
            frame), with one target per step in ``y``.
        y : array-like, list of array-like or pandas Series
            One label per sequence ``(n_sequences,)``, or one per step
            ``(n_sequences, n_timesteps)`` (a list of ``(length_i,)`` arrays
            for ragged ``X``, a Series indexed like a pandas ``X``).
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights; the loss is ``sum(w * l) / sum(w)``.

        Returns
        -------
        self : RNNClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train for one epoch on ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.
        y : array-like, list of array-like or pandas Series
            Labels, per sequence or per step.
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights.
        classes : array-like of shape (n_classes,), default=None
            All the labels that can appear; required on the first call and
            ignored (if equal) afterwards.

        Returns
        -------
        self : RNNClassifier
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.

        Returns
        -------
        ndarray of shape (n_sequences, n_classes), or per-step probabilities
            Per-step models return ``(n_sequences, n_timesteps, n_classes)``
            for array input, a list of ``(length_i, n_classes)`` arrays for
            ragged input and a DataFrame (columns ``classes_``) indexed like
            a pandas ``X``.
        """
        outputs, data = self._forward(X)
        proba = self._proba_from_outputs(outputs)
        if self.per_step_:
            return _validation.format_step_output(proba, data, columns=self.classes_)
        return proba

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed stably from the logits.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.

        Returns
        -------
        ndarray or per-step equivalent
            Same shapes as :meth:`predict_proba`.
        """
        outputs, data = self._forward(X)
        if self.n_outputs_ == 1:
            logits = np.concatenate([np.zeros_like(outputs), outputs], axis=-1)
        else:
            logits = outputs
        log_proba = losses.log_softmax(logits)
        if self.per_step_:
            return _validation.format_step_output(log_proba, data, columns=self.classes_)
        return log_proba

    def predict(self, X):
        """Predicted labels.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.

        Returns
        -------
        ndarray of shape (n_sequences,), or per-step labels
            Per-step models return ``(n_sequences, n_timesteps)`` for array
            input, a list of ``(length_i,)`` arrays for ragged input and a
            Series indexed like a pandas ``X``.
        """
        outputs, data = self._forward(X)
        labels = self.classes_[self._indices_from_outputs(outputs)]
        if self.per_step_:
            return _validation.format_step_output(labels, data)
        return labels

    def score(self, X, y, sample_weight=None):
        """Mean accuracy; for per-step models over the real (unpadded) steps.

        Parameters
        ----------
        X : array-like, list of array-like or pandas DataFrame
            Sequences.
        y : array-like, list of array-like or pandas Series
            True labels, in the form given to ``fit``.
        sample_weight : array-like of shape (n_sequences,), default=None
            Per-sequence weights (each step of a sequence gets its weight).

        Returns
        -------
        float
            Accuracy.
        """
        outputs, data = self._forward(X)
        predicted = self.classes_[self._indices_from_outputs(outputs)]
        truth, weights, mask = self._scoring_entries(y, data, sample_weight)
        if mask is not None:
            predicted = predicted[mask]
        if truth.ndim == predicted.ndim + 1 and truth.shape[-1] == 1:
            truth = truth[..., 0]
        return float(accuracy_score(truth, predicted, sample_weight=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags

    # ------------------------------------------------------------------
    # Hooks of the training loop
    # ------------------------------------------------------------------

    def _check_task_hyperparameters(self):
        weight = self.class_weight
        if not (weight is None or weight == "balanced" or isinstance(weight, dict)):
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{label: weight}}; "
                f"got {weight!r}."
            )

    def _prepare_targets(self, targets, sample_weight, *, incremental, classes, continuing):
        name = type(self).__name__
        labels = targets.values
        label_ndim = 2 if targets.per_step else 1
        if labels.ndim == label_ndim + 1:
            if labels.shape[-1] != 1:
                raise ValueError(
                    f"{name} takes one label per sequence (or per step); got y of shape "
                    f"{labels.shape}. Multi-output classification is not supported."
                )
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change "
                "the shape of y to (n_samples, ), for example using ravel().",
                DataConversionWarning,
                stacklevel=4,
            )
            labels = labels[..., 0]
        counted = labels[targets.mask] if targets.mask is not None else labels.reshape(-1)
        if counted.dtype.kind == "f" and not np.isfinite(counted).all():
            problem = "NaN" if np.isnan(counted).any() else "infinity"
            raise ValueError(f"Input y contains {problem}.")
        check_classification_targets(counted)

        if continuing:
            classes_ = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), classes_):
                raise ValueError(
                    f"classes={np.unique(classes).tolist()} differs from the classes of "
                    f"the earlier fit, {classes_.tolist()}."
                )
        elif incremental:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes_ = np.unique(classes)
        else:
            classes_ = np.unique(counted)
        unknown = np.setdiff1d(np.unique(counted), classes_)
        if len(unknown):
            raise ValueError(
                f"y contains labels {unknown.tolist()} that are not in classes "
                f"{classes_.tolist()}; pass every possible label in `classes` on the first "
                "call to partial_fit (or refit without warm_start)."
            )
        if len(classes_) < 2:
            raise ValueError(
                f"{name} needs samples of at least 2 classes in the data, but the data "
                f"contains only 1 class: {classes_[0]!r}."
            )
        indices = np.searchsorted(classes_, labels)

        entry_weights = sample_weight
        if self.class_weight is not None:
            if self.class_weight == "balanced" and incremental:
                raise ValueError(
                    "class_weight='balanced' needs all of y; with partial_fit pass a dict "
                    "{label: weight}."
                )
            class_weights = compute_class_weight(self.class_weight, classes=classes_, y=counted)
            per_entry = class_weights[indices]
            if targets.per_step:
                entry_weights = sample_weight[:, None] * per_entry
            else:
                entry_weights = sample_weight * per_entry
        if not incremental:
            full = np.broadcast_to(
                entry_weights if entry_weights.ndim == indices.ndim else entry_weights[:, None],
                indices.shape,
            )
            mask = targets.mask if targets.mask is not None else np.ones(indices.shape, bool)
            weight_per_class = np.bincount(
                indices[mask], weights=full[mask], minlength=len(classes_)
            )
            if np.count_nonzero(weight_per_class > 0) < 2:
                raise ValueError(
                    "Only 1 class has a non-zero total sample weight; the classifier "
                    "needs at least 2 classes with positive weight."
                )

        self.classes_ = classes_
        binary = len(classes_) == 2
        self.out_activation_ = "logistic" if binary else "softmax"
        if binary:
            return indices[..., None].astype(np.float64), entry_weights, 1
        return indices, entry_weights, len(classes_)

    def _loss_function(self):
        if len(self.classes_) == 2:
            return losses.binary_crossentropy_from_logits
        return losses.sparse_categorical_crossentropy_from_logits

    def _stratify_labels(self, loss_targets, per_step):
        if per_step:
            return None
        return loss_targets[:, 0] if loss_targets.ndim == 2 else loss_targets

    def _indices_from_outputs(self, outputs):
        if outputs.shape[-1] == 1:
            return (outputs[..., 0] > 0).astype(np.intp)
        return np.argmax(outputs, axis=-1)

    def _proba_from_outputs(self, outputs):
        if outputs.shape[-1] == 1:
            positive = losses.sigmoid(outputs)
            return np.concatenate([1.0 - positive, positive], axis=-1)
        return losses.softmax(outputs)

    def _score_outputs(self, outputs, loss_targets, step_mask, sample_weight):
        predicted = self._indices_from_outputs(outputs)
        truth = loss_targets[..., 0].astype(np.intp) if outputs.shape[-1] == 1 else loss_targets
        if predicted.ndim == 1:
            return float(accuracy_score(truth, predicted, sample_weight=sample_weight))
        mask = step_mask if step_mask is not None else np.ones(predicted.shape, dtype=bool)
        weights = np.broadcast_to(sample_weight[:, None], mask.shape)[mask]
        return float(accuracy_score(truth[mask], predicted[mask], sample_weight=weights))


RNNClassifier.__doc__ = _fill_shared_docs(
    """Recurrent-network classifier (LSTM, GRU or SimpleRNN) for sequences.

    Classifies whole sequences (one label each) or labels every time step
    (sequence labelling). Two classes use one output logit and the sigmoid
    cross-entropy; more use one logit per class and the softmax
    cross-entropy, both computed from the logits.

    Parameters
    ----------
    <network parameters>
    class_weight : dict, 'balanced' or None, default=None
        Weights ``{label: weight}`` multiplying the sample weights;
        'balanced' uses ``n_entries / (n_classes * count(label))``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    out_activation_ : {'logistic', 'softmax'}
        How the logits become probabilities.
    <fitted attributes>

    See Also
    --------
    RNNRegressor : The regression counterpart.

    Notes
    -----
<input notes>

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 12, 2))
    >>> y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    >>> clf = RNNClassifier(units=(8,), max_iter=30, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """
)
