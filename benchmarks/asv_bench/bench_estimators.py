"""scikit-learn estimators: fit, predict and the peak memory of fit.

256 sequences of 50 steps and 8 features; a 32-unit recurrent layer; three
epochs per fit (``max_iter=3``), mini-batches of 64.
"""

from .common import quiet, sequences

N, STEPS, FEATURES, UNITS = 256, 50, 8, 32


def _data():
    X = sequences(N, STEPS, FEATURES)
    y_class = (X[:, :, 0].mean(axis=1) > 0).astype(int)
    y_reg = X[:, :, 1].sum(axis=1)
    return X, y_class, y_reg


def _estimator(kind, cell):
    import numrnn

    cls = numrnn.RNNClassifier if kind == "classifier" else numrnn.RNNRegressor
    return cls(cell=cell, units=(UNITS,), max_iter=3, batch_size=64, random_state=0)


class Estimators:
    params = (["classifier", "regressor"], ["lstm", "gru"])
    param_names = ["estimator", "cell"]

    def setup(self, kind, cell):
        quiet()
        self.X, y_class, y_reg = _data()
        self.y = y_class if kind == "classifier" else y_reg
        self.fitted = _estimator(kind, cell).fit(self.X, self.y)  # warms every kernel up
        self.fitted.predict(self.X)

    def time_fit(self, kind, cell):
        _estimator(kind, cell).fit(self.X, self.y)

    def time_predict(self, kind, cell):
        self.fitted.predict(self.X)

    def peakmem_fit(self, kind, cell):
        _estimator(kind, cell).fit(self.X, self.y)


class LongSequences:
    """Peak memory of a fit on longer sequences (the caches grow with T)."""

    params = [[100, 400]]
    param_names = ["timesteps"]

    def setup(self, steps):
        quiet()
        self.X = sequences(64, steps, 4)
        self.y = self.X[:, :, 0].sum(axis=1)
        _estimator("regressor", "lstm").set_params(max_iter=1).fit(self.X[:8], self.y[:8])

    def peakmem_fit(self, steps):
        _estimator("regressor", "lstm").set_params(max_iter=1).fit(self.X, self.y)
