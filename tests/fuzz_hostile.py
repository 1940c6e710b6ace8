"""The fuzzer's hostile constructs: huge literals, deep nesting, big shapes, block doubling, include chains.

`Hostile` is a mixin of the generator `Gen` (tests/fuzz_generate.py): a share of
cases (HOSTILE) is one hostile construct, each tagged `hostile:<kind>`. Hostile
search spaces (a choice of 10,000 options, deep nested choices, ...) live in
tests/fuzz_spaces.py.
"""
from __future__ import annotations


class Hostile:
    """Hostile programs (a mixin: `Gen` supplies `r`, `tag`, `shape_text`)."""

    def hostile(self) -> tuple[list[str], list[str], dict[str, str]]:
        """Return (block texts, model lines, extra files) of one hostile construct (its tag added)."""
        values = ["huge-int", "huge-float", "deep-parens", "deep-negation", "long-chain", "big-shape",
                  "high-rank", "prime-groupnorm", "wide"]
        structures = ["doubling", "nested-repeat", "huge-repeat", "include-chain", "include-self",
                      "include-missing", "include-device"]
        kind = self.r.choice(values + structures)
        self.tag(f"hostile:{kind}")
        if kind in values:
            return [], ["  input x: [3]", *self.hostile_value(kind)], {}
        return self.hostile_structure(kind)

    def hostile_value(self, kind: str) -> list[str]:
        """Return model lines (after `input x: [3]`) with a hostile value or expression of this kind."""
        r = self.r
        if kind == "huge-int":
            digits = r.choice([300, 4300, 4301, 5000, 20000])
            if digits > 4300:   # Python's int-string conversion limit
                self.tag("hostile:huge-int:over-4300-digits")
            return [f"  output o = x * 1{'0' * (digits - 1)}" if r.random() < 0.5
                    else f"  output o = linear(x, {'9' * digits})"]
        if kind == "huge-float":
            return [f"  output o = x * {r.choice(['1e400', '1e-400', '1' * 400 + '.5', '1e99999999'])}"]
        if kind == "deep-parens":
            depth = r.choice([50, 150, 199, 200, 201, 400, 3000])
            return ["  output o = " + "(" * depth + "x" + ")" * depth]
        if kind == "deep-negation":
            return ["  output o = " + "-" * r.choice([50, 199, 201, 1000]) + "x"]
        if kind == "long-chain":
            return ["  output o = x" + " -> relu" * r.choice([100, 1000, 3000])]
        if kind == "big-shape":
            shape = r.choice([[100000, 100000], [2 ** 41], [2 ** 20, 2 ** 20, 2], [10 ** 30]])
            return [f"  input big: {self.shape_text(shape)}", "  output o = relu(big)"]
        if kind == "high-rank":
            rank = r.choice([8, 32, 64, 65, 67])
            if rank > 64 - 1:   # NumPy arrays have at most 64 axes, and the batch takes one
                self.tag("hostile:high-rank:over-63")
            return [f"  output o = reshape(x, [{', '.join(['1'] * (rank - 1))}, 3])"]
        if kind == "prime-groupnorm":
            return [f"  input p: [{r.choice([1000000007, 999983])}]", "  output o = groupnorm(p, 2)"]
        n = r.choice([500, 2000])   # wide: many statements
        return [f"  h{i} = x + {i}" for i in range(n)] + \
            ["  output o = concat(" + ", ".join(f"h{i}" for i in range(0, n, 7)) + ")"]

    def hostile_structure(self, kind: str) -> tuple[list[str], list[str], dict[str, str]]:
        """Return (block texts, model lines, extra files) of a hostile block or include structure."""
        r = self.r
        lines = ["  input x: [3]", "  output o = relu(x)"]
        files = {}
        if kind == "doubling":
            levels = r.choice([5, 10, 16, 20, 25])
            blocks = ["block d0(x) { return relu(x) }\n"]
            blocks += [f"block d{i}(x) {{ return d{i - 1}(d{i - 1}(x)) }}\n" for i in range(1, levels + 1)]
            lines[1] = f"  output o = d{levels}(x)"
        elif kind in ("nested-repeat", "huge-repeat"):
            count, levels = r.choice([(10, 2), (100, 2), (1000, 3), (10000, 2)]) if kind == "nested-repeat" \
                else (r.choice([10001, 10 ** 6, 10 ** 30]), 1)
            blocks = ["block r0(x) { return relu(x) }\n"]
            blocks += [f"block r{i}(x) {{ return x -> repeat {count} r{i - 1} }}\n" for i in range(1, levels + 1)]
            lines[1] = f"  output o = r{levels}(x)"
        elif kind == "include-chain":
            depth = r.choice([10, 63, 64, 65, 100])
            for i in range(depth):
                files[f"chain/c{i}.nn"] = f'include "c{i + 1}.nn"\n' if i + 1 < depth else \
                    "block tail(x) { return relu(x) }\n"
            blocks = ['include "chain/c0.nn"\n']
            lines[1] = "  output o = tail(x)"
        elif kind == "include-self":
            files["loop_a.nn"] = 'include "loop_b.nn"\n'
            files["loop_b.nn"] = 'include "loop_a.nn"\nblock lb(x) { return x }\n'
            blocks = [r.choice(['include "main.nn"\n', 'include "loop_a.nn"\n'])]
        elif kind == "include-missing":
            blocks = [r.choice(['include "nowhere.nn"\n', 'include "chain"\n', 'include ""\n', 'include "."\n'])]
        else:   # include-device
            blocks = [r.choice(['include "/dev/null"\n', 'include "/dev/zero"\n', 'include "/proc/self/status"\n'])]
        return blocks, lines, files

