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

# The MLP above with search spaces (units and the learning rate), for the search tests: each trial
# trains for EPOCHS epochs; the search section says how many trials and which sampler.
TINY_SEARCH = """\
model tiny {
  input x: [64]
  label y: class[10]
  units = int(8, 32, step=8)
  logits = x -> linear(units) -> relu -> linear(10)
  loss = cross_entropy(logits, y)
}
train { data = digits; validation = 0.2; epochs = EPOCHS; batch = 64; optimizer = sgd(lr=loguniform(LR_LOW, 1)) }
search { SEARCH }
"""

# f(x, y) = x^2/20 + y^2 from (-7, 2), the textbook's optimizer bowl: a loss over parameters only
# (`data = none`: one step per epoch, no inputs). E4 runs it 30 steps.
BOWL = """
model bowl {
  param x: [] init=constant(value=-7)
  param y: [] init=constant(value=2)
  loss = x * x / 20 + y * y
}
train { data = none; epochs = 30; optimizer = sgd(lr=0.95) }
"""
