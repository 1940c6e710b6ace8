"""Small models the training tests share: each trains in a fraction of a second on the 8x8 digits."""

# A 64-16-10 MLP with a validation split: used by the progress and library-API tests.
TINY = """
model tiny {
  input x: [64]
  label y: class[10]
  h = linear(x, 16) -> relu
  logits = linear(h, 10)
  loss = cross_entropy(logits, y)
}
train { data = digits; batch = 64; epochs = 2; optimizer = sgd(lr=0.1); validation = 0.1; seed = 3 }
"""
