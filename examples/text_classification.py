"""Text-style classification: padded token sequences, Embedding(mask_zero=True).

Synthetic "reviews" of 2 to 37 tokens: ids 1-4 are positive words, 5-8
negative words, 9 is "not" (it flips the word after it) and 10-49 are
neutral words. A review is positive when its sentiment words, after the
flips, lean positive, so word order matters: "not good" is negative. The
reviews are padded with the id 0 to one length; ``Embedding(mask_zero=True)``
masks the padding, so the LSTM reads only the real tokens. The network is a
``numrnn.Sequential`` trained by a short loop written with
``numrnn.losses`` and ``numrnn.optimizers``.

The script prints the test accuracy, checks that the amount of padding does
not change any prediction, and saves text_classification.png (training
loss and test accuracy per epoch).

Run: python examples/text_classification.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os
from pathlib import Path

import numpy as np

from numrnn import Sequential, layers, losses, optimizers

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))
N_REVIEWS = 400 if QUICK else 2000
EPOCHS = 2 if QUICK else 6
VOCABULARY = 50  # ids 1..49; 0 is the padding id
POSITIVE, NEGATIVE, NOT = np.arange(1, 5), np.arange(5, 9), 9
rng = np.random.default_rng(0)


def make_review():
    """One review (token ids) and its label, or None for a tie."""
    phrases, score = [], 0
    for _ in range(rng.integers(1, 4)):
        positive = rng.random() < 0.5
        word = int(rng.choice(POSITIVE if positive else NEGATIVE))
        negated = rng.random() < 0.3
        phrases.append([NOT, word] if negated else [word])
        score += (1 if positive else -1) * (-1 if negated else 1)
    if score == 0:
        return None
    filler = rng.integers(10, VOCABULARY, size=int(rng.integers(1, 32)))
    where = np.sort(rng.integers(0, len(filler) + 1, size=len(phrases)))
    tokens, k = [], 0
    for i in range(len(filler) + 1):
        while k < len(phrases) and where[k] == i:
            tokens += phrases[k]
            k += 1
        if i < len(filler):
            tokens.append(int(filler[i]))
    return np.array(tokens), int(score > 0)


def make_reviews(n):
    """n token-id arrays and their labels, shape (n, 1)."""
    reviews, labels = [], []
    while len(reviews) < n:
        review = make_review()
        if review is not None:
            reviews.append(review[0])
            labels.append(review[1])
    return reviews, np.array(labels, dtype=np.float32)[:, None]


def pad(reviews, length):
    """Post-pad token lists with the id 0 into an int array (n, length)."""
    out = np.zeros((len(reviews), length), dtype=np.int64)
    for i, tokens in enumerate(reviews):
        out[i, : len(tokens)] = tokens
    return out


train_reviews, y_train = make_reviews(N_REVIEWS)
test_reviews, y_test = make_reviews(N_REVIEWS // 4)
max_length = max(len(r) for r in train_reviews + test_reviews)
X_train, X_test = pad(train_reviews, max_length), pad(test_reviews, max_length)
print(f"{len(train_reviews)} training reviews padded to {X_train.shape}")

model = Sequential(
    [
        layers.Embedding(VOCABULARY, 16, mask_zero=True, seed=0, name="embedding"),
        layers.LSTM(32, seed=1, name="lstm"),
        layers.Dense(1, seed=2, name="logit"),  # a logit: sigmoid(logit) = P(positive)
    ]
)
model.build((None, None))
model.summary()

optimizer = optimizers.Adam(learning_rate=0.005)
epoch_losses, test_accuracy = [], []
for epoch in range(EPOCHS):
    order = rng.permutation(len(X_train))
    batch_losses = []
    for start in range(0, len(order), 32):
        batch = order[start : start + 32]

        def cotangents(logits, targets=y_train[batch], record=batch_losses.append):
            value, grad = losses.binary_crossentropy_from_logits(targets, logits)
            record(value)
            return [grad]

        _, (grads, _, _) = model.value_and_vjp(X_train[batch], cotangents, training=True)
        optimizer.update(model.trainable_weights, grads)
    epoch_losses.append(float(np.mean(batch_losses)))
    test_accuracy.append(float(np.mean((model.predict(X_test) > 0) == y_test)))
    print(
        f"epoch {epoch + 1:2d}  loss {epoch_losses[-1]:.4f}  test accuracy {test_accuracy[-1]:.3f}"
    )

# Word order matters: "not" flips the word after it.
probe = pad([np.array([12, 1, 30]), np.array([12, NOT, 1, 30])], max_length)
p_good, p_not_good = losses.sigmoid(model.predict(probe))[:, 0]
print(f'P(positive): "... good ..." {p_good:.2f}, "... not good ..." {p_not_good:.2f}')

# The mask makes padding invisible: more padding, same predictions.
longer = pad(test_reviews, max_length + 25)
same = np.allclose(model.predict(X_test), model.predict(longer), atol=1e-5)
print(f"predictions unchanged by 25 more padding steps: {same}")
if not same:
    raise SystemExit("padding changed the predictions: the mask did not work")

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: skipping the plot")
else:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, EPOCHS + 1)
    ax_loss.plot(epochs, epoch_losses, marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="binary cross-entropy")
    ax_acc.plot(epochs, test_accuracy, marker="o", color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="test accuracy", ylim=(0.4, 1.02))
    fig.tight_layout()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "text_classification.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
