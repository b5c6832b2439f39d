"""Graph -> kernels. Decides which nodes are materialized and lowers each
materialized node's inline subtree to a kernel AST.

Fusion rules, all following from "a kernel evaluates its tree at an index":
- elementwise and movement ops always inline (movement only rewrites the index);
- a reduce inlines into its consumers (an epilogue, even through reshapes);
- under an EXPAND that broadcasts (or as a GATHER's table), inlining would recompute the
  subtree once per broadcast copy, so a subtree that holds a reduce or real arithmetic
  on loaded data is materialized there (padded, where the chain above it pads: a
  convolution's input);
- a node holding a reduce that several kernels would inline is materialized once (in the
  layout its readers see, past a chain of reshapes and permutes), and so
  is an elementwise subtree reading several buffers that k kernels would inline, when the
  k * loads reads that costs exceed loads + 1 + k (a transformer's residual stream is a
  sum over every earlier layer, re-read by every LayerNorm and backward kernel); such a
  subtree is left to its only reader where that is elementwise: the reader is shared by
  the same kernels and stored instead (an inference LayerNorm is one kernel);
- SCATTER_ADD, CONTIGUOUS, COPY and the requested targets are always materialized, and
  so is a scatter's value that holds a reduce: the scatter walks its index in order along
  the axis, which gives the reduce neither its vector loop nor its tile of accumulators
  (W3's position-embedding gradient, a sum over the batch inside the scatter: 570 us);
- a tree deeper than MAX_DEPTH is cut, so a long lazy chain (x = x + 1 in a loop) never
  becomes an AST that a code generator's recursion cannot handle.
"""
from __future__ import annotations

import heapq
from math import prod
from dataclasses import dataclass

from ..codegen.kernel import Kernel, KNode
from ..graph.lazy import LazyBuffer, toposort
from ..graph.ops import ELEMENTWISE, MOVEMENT, REDUCE, Op
from ..runtime import get_device

_ALWAYS = (Op.SCATTER_ADD, Op.CONTIGUOUS, Op.COPY)
MAX_DEPTH = 200
SHARED_MIN_LOADS = 3  # below this, re-reading beats a kernel launch and a round trip
_LOADS_CAP = 16  # counting distinct reads stops here (enough to decide; keeps planning linear)
# fewer rows than this run a fused row kernel on too few threads: a (1, 50000) softmax
# took 58 us fused, 45 us as three kernels, each parallel over the row
ROW_MIN = 8
_CHAIN = ELEMENTWISE | {Op.RESHAPE}  # what a shared reduce's sole reader chain may hold (_inline_into_sole_reader)


@dataclass
class ScheduleItem:
    out: LazyBuffer
    kernel: Kernel | None  # None for a COPY between devices
    inputs: list  # LazyBuffers whose buffers the kernel loads, in LOAD order


def _broadcasts(node: LazyBuffer) -> bool:
    return node.op is Op.EXPAND and any(a != b for a, b in zip(node.src[0].shape, node.shape))


class _Planner:
    def __init__(self, targets: list[LazyBuffer], order: list[LazyBuffer] | None = None):
        self.order = toposort(targets) if order is None else order
        self.mat = {id(t) for t in targets if t.buffer is None}
        self.mat |= {id(n) for n in self.order if n.op in _ALWAYS and n.buffer is None}
        for n in self.order:  # a COPY's source is realized on its own device first
            if n.op is Op.COPY and n.buffer is None:
                self.mat.add(id(n.src[0]))
        self._fixed = set(self.mat)  # materialized whatever the rules below decide
        self._rows: dict = {}  # device -> whether it runs rows as loops (see _row_loops)
        # reduce, work, depth, the buffers the inline tree reads (ids; capped)
        self._cost: dict[int, tuple[bool, bool, int, frozenset]] = {}
        self._pos = {id(n): i for i, n in enumerate(self.order)}
        self._users: dict[int, list] = {}
        for n in self.order:
            for s in n.src:
                self._users.setdefault(id(s), []).append(n)
        for n in self.order:  # producers first, so every source is already summarized
            self._cost[id(n)] = self._node_cost(n)

    def _summary(self, n: LazyBuffer) -> tuple[bool, bool]:
        """(holds a reduce, holds real work) within n's inline tree; work is a reduce, a
        gather, or arithmetic that touches loaded data (not just constants/iota)."""
        return self._cost[id(n)][:2]

    def _depth(self, n: LazyBuffer) -> int:
        return self._cost[id(n)][2]

    def _n_loads(self, n: LazyBuffer) -> int:
        """How many distinct buffers n's inline tree reads (at most _LOADS_CAP)."""
        return len(self._cost[id(n)][3])

    def _node_cost(self, n: LazyBuffer) -> tuple:
        if n.buffer is not None or id(n) in self.mat:
            return (False, False, 0, frozenset((id(n),)))
        if n.op in (Op.CONST, Op.IOTA):
            return (False, False, 1, frozenset())
        red, work, depth, reads = n.op in REDUCE, n.op is Op.GATHER, 0, frozenset()
        for s in n.src:
            r, w, d, rd = self._cost[id(s)]
            red, work, depth = red or r, work or w, max(depth, d)
            if len(reads) < _LOADS_CAP and rd:
                reads = reads | rd if len(rd) < _LOADS_CAP else rd
        if n.op in ELEMENTWISE and n.op is not Op.CAST and reads:  # arithmetic on loaded data
            work = True
        return (red, work or red, depth + 1, reads)

    def _materialize(self, n: LazyBuffer) -> None:
        """Add n to the materialized set and update the summaries that change: n's
        consumers, transitively, in topological order, stopping where nothing changed
        (one pass over the graph per cut made a W3 step's planning take seconds)."""
        self.mat.add(id(n))
        self._update(n)

    def _update(self, n: LazyBuffer) -> None:
        heap, queued = [self._pos[id(n)]], {id(n)}
        while heap:
            node = self.order[heapq.heappop(heap)]
            cost = self._node_cost(node)
            if cost == self._cost[id(node)] and node is not n:
                continue
            self._cost[id(node)] = cost
            for u in self._users.get(id(node), ()):
                if id(u) not in queued:
                    queued.add(id(u))
                    heapq.heappush(heap, self._pos[id(u)])

    def plan(self) -> list[LazyBuffer]:
        """Fix the materialized set; returns it in execution order."""
        while True:
            # broadcast rule first: it cuts trees, which changes what "holds a reduce" means
            owners: dict[int, int] = {}  # kernels inlining a node
            evals: dict[int, int] = {}  # and places: a kernel's row reduce loop and its outer loop
            for root in reversed(self.order):
                if id(root) in self.mat and root.buffer is None:
                    inlined = self._walk_root(root)
                    for nid, _ in inlined:
                        evals[nid] = evals.get(nid, 0) + 1
                    for nid in {nid for nid, _ in inlined}:
                        owners[nid] = owners.get(nid, 0) + 1
            # a reduce inlined into several kernels would be recomputed by each of them;
            # producers first, so a consumer is judged after its producers were cut. A
            # subtree holding no reduce counts each place it is evaluated (a softmax's
            # probabilities under a row sum and beside it: stored, not computed twice);
            # one holding a reduce counts kernels (that reduce is computed once per row)
            grew = False
            for n in self.order:
                if n.buffer is not None or id(n) in self.mat:
                    continue
                k = (owners if self._summary(n)[0] else evals).get(id(n), 0)
                if k > 1 and self._shared_cost(n, k) and not self._sole_user_shared(n):
                    self._materialize(_read_layout(n, self._users) if self._summary(n)[0] else n)
                    grew = True
                elif self._depth(n) > MAX_DEPTH:
                    self._materialize(n)
                    grew = True
            if not grew:
                self._inline_into_sole_reader()
                self._inline_row_stats()
                self._drop_views()
                return [n for n in self.order if id(n) in self.mat and n.buffer is None]

    def _inline_into_sole_reader(self) -> None:
        """A reduce materialized because several kernels inlined it can end up read by
        one: the elementwise chain above it (a matmul's bias, then a residual add) was
        materialized later, as shared itself. Then it goes back inline, into that
        chain's kernel: a GEMM whose epilogue runs on each block as the GEMM finishes
        it, not a GEMM storing the bare product and a kernel of its own re-reading it
        (W3, W4: the residual adds). Not under a permute: the GEMM would no longer
        write through it (see _read_layout)."""
        for n in self.order:
            if id(n) not in self.mat or id(n) in self._fixed or n.buffer is not None:
                continue
            base = n
            while base.op is Op.RESHAPE and base.src[0].buffer is None:
                base = base.src[0]
            if base.op not in REDUCE or self._depth(base.src[0]) > MAX_DEPTH // 2:
                continue  # (a deep tree stays cut: rule 4)
            node = n
            while True:
                up = self._users.get(id(node), ())
                if len(up) != 1 or up[0].op not in _CHAIN or up[0].buffer is not None:
                    break
                node = up[0]
                if id(node) in self.mat:
                    self.mat.discard(id(n))
                    self._update(n)
                    break

    def _inline_row_stats(self) -> None:
        """A row's statistic (a reduce over the last dim, kept as a dim of 1) cut while
        another kernel inlined the chain above it, then stored when that chain was (a
        LayerNorm backward's two row means, first met in the bias gradient of the linear
        before it), that in the end one kernel reads, and only broadcast along the rows
        it loops over: inline there, computed once per row (one kernel fewer a mean).
        Again while any went inline: a mean that the variance's kernel read too has one
        reader once the variance is inline (an inference LayerNorm)."""
        while self._inline_row_stats_once():
            pass

    def _inline_row_stats_once(self) -> bool:
        readers: dict = {}  # id -> set of (reading kernel's root, read along its rows)
        for root in self.order:
            if id(root) in self.mat and root.buffer is None and root.op is not Op.COPY:
                stack, seen = self._root_stack(root), set()
                while stack:
                    n, crossed, row = stack.pop()
                    key = (id(n), crossed, row)
                    if n.buffer is not None or key in seen:
                        continue
                    seen.add(key)
                    if id(n) in self.mat:
                        along = not crossed and row is not None and row[0] == n.shape and not row[1]
                        readers.setdefault(id(n), set()).add((id(root), along))
                        continue
                    for i, s in enumerate(n.src):
                        stack.append((s,) + _below(n, i, crossed, row))
        inlined = False
        for n in self.order:
            got = readers.get(id(n))
            if id(n) in self._fixed or not got or len(got) != 1 or not next(iter(got))[1] or \
                    not n.shape or n.shape[-1] != 1 or self._reduces_inline(n) != 1:
                continue
            self.mat.discard(id(n))
            self._update(n)
            inlined = True
        return inlined

    def _reduces_inline(self, n: LazyBuffer) -> int:
        """How many reduces n's kernel computes (its tree down to stored nodes)."""
        stack, seen, count = list(n.src), set(), int(n.op in REDUCE)
        while stack:
            m = stack.pop()
            if m.buffer is not None or id(m) in self.mat or id(m) in seen:
                continue
            seen.add(id(m))
            count += m.op in REDUCE
            stack.extend(m.src)
        return count

    def _drop_views(self) -> None:
        """A node the rules cut while work lay under it can be a bare view of buffers by
        the end (a later cut took the work): a kernel copying it would be wasted."""
        for n in self.order:
            if id(n) in self.mat and id(n) not in self._fixed and n.op in MOVEMENT and \
                    n.buffer is None and not self._summary(n.src[0])[1] and self._depth(n.src[0]) < MAX_DEPTH // 2:
                self.mat.discard(id(n))
                self._update(n)

    def _sole_user_shared(self, n: LazyBuffer) -> bool:
        """Whether shared elementwise n is better left to its only reader, an elementwise
        node: the kernels inlining n all do it through that reader, which reads what n
        reads and more, so it is shared by the same kernels and materialized in its turn
        (judged after n, producers first, it used to be cut too: an inference LayerNorm
        stored (x - mean) * rstd, then re-read it to apply the weight and the bias)."""
        if n.op not in ELEMENTWISE or self._summary(n)[0]:
            return False
        users = self._users.get(id(n), ())
        u = users[0] if users else None
        return u is not None and all(v is u for v in users) and u.op in ELEMENTWISE and u.buffer is None and \
            id(u) not in self.mat and not self._read_padded(u)

    def _read_padded(self, n: LazyBuffer) -> bool:
        """Whether a chain of movement ops from n pads it (a convolution's input): a
        kernel storing n's work padded is read by the convolution in place, while a
        stored n leaves a bare padded view that the claim copies from Python."""
        stack, seen = [n], set()
        while stack:
            for u in self._users.get(id(stack.pop()), ()):
                if u.op is Op.PAD:
                    return True
                if u.op in MOVEMENT and u.buffer is None and id(u) not in seen:
                    seen.add(id(u))
                    stack.append(u)
        return False

    def _shared_cost(self, n: LazyBuffer, k: int) -> bool:
        """Whether n, inlined by k kernels, is worth computing once instead."""
        red, work = self._summary(n)
        if red:
            return True
        loads = self._n_loads(n) if work and n.op in ELEMENTWISE else 0
        return loads >= SHARED_MIN_LOADS and k * loads > loads + 1 + k

    def _walk_root(self, root: LazyBuffer) -> set:
        """Materialize under-broadcast work in root's tree; returns the inlined nodes as
        (id, inside a row reduce's loop) pairs."""
        if root.op is Op.COPY:
            return set()
        if root.op is Op.SCATTER_ADD:  # values that hold a reduce are computed on their own
            val = root.src[2]
            if val.buffer is None and id(val) not in self.mat and self._summary(val)[0]:
                self._materialize(_view_base(val, self._users))
        while True:  # a cut made mid-walk changes the tree: walk again until none is made
            cut, inlined = self._walk(self._root_stack(root))
            if not cut:
                return inlined

    def _root_stack(self, root: LazyBuffer) -> list:
        """A walk's start: root's sources with their (crossed, row) states (see _below)."""
        row = (root.shape, False) if self._row_loops(root) else None
        return [(s,) + _below(root, i, False, row) for i, s in enumerate(root.src)]

    def _cut_at(self, n: LazyBuffer) -> LazyBuffer:
        """Where to store the work under a broadcast that starts at n: _view_base(n), or
        the work itself where that is only a reshape adding or dropping 1s of it (the same
        layout), other kernels read the work too, and it ends a whole-size reduce that
        nothing else reads (a matmul's output with its bias and ReLU: the ReLU's
        backward, reading the activation, loads it instead of redoing it, so the product
        is stored nowhere and its GEMM takes the bias and ReLU as epilogue). Not where
        the work reads a reduce stored anyway or broadcast (a LayerNorm's normalized
        input: redone from the stored residual stream and row statistics)."""
        best = _view_base(n, self._users)
        work = best.src[0] if best.op is Op.RESHAPE else None
        if work is None or work.buffer is not None or work.op not in ELEMENTWISE or \
                _squeezed(best.shape) != _squeezed(work.shape) or len(self._users.get(id(work), ())) < 2:
            return best
        stack, seen, size = [work], set(), prod(work.shape)
        while stack:
            m = stack.pop()
            if m.buffer is not None or id(m) in self.mat or id(m) in seen:
                continue
            seen.add(id(m))
            if m.op in REDUCE and prod(m.shape) == size:
                return work
            if m.op in ELEMENTWISE or m.op is Op.RESHAPE:  # into what only this tree reads
                stack.extend(src for src in m.src if len(self._users.get(id(src), ())) == 1)
        return best

    def _row_loops(self, n: LazyBuffer) -> bool:
        """Whether n's device runs a kernel's innermost dims as loops inside each
        position of the outer ones (a value that only the outer index changes is computed
        once per row: see cstyle's _Emitter), not one work-item per element."""
        got = self._rows.get(n.device)
        if got is None:
            got = self._rows[n.device] = bool(get_device(n.device).caps.get("row_loops"))
        return got

    def _walk(self, stack: list) -> tuple[bool, set]:
        seen, cut = set(), False
        while stack:
            n, crossed, row = stack.pop()
            key = (id(n), crossed, bool(row and row[1]) and not _broadcasts(n))  # (a broadcast is a view)
            if n.buffer is not None or id(n) in self.mat or key in seen:
                continue
            seen.add(key)
            if n.op is Op.CONST or n.op is Op.IOTA:
                continue
            if crossed and self._summary(n)[1]:
                self._materialize(self._cut_at(n))
                cut = True  # summaries above n changed
                continue
            for i, s in enumerate(n.src):
                stack.append((s,) + _below(n, i, crossed, row))
        # a node inlined both inside a row reduce's loop and outside it is computed twice
        return cut, {(nid, inside) for nid, _, inside in seen}


def _below(n: LazyBuffer, i: int, crossed: bool, row: tuple | None) -> tuple:
    """(crossed, row) for source i of n. crossed: under a broadcast (or a gather's table),
    where work would be redone per broadcast copy. row: (shape, inside) when the kernel
    loops over the last dim of `shape` innermost at n, inside a reduce over that dim or
    not (None when unknown). A keepdim reduce over the last dim (a softmax's max and sum,
    a LayerNorm's mean and variance) broadcast back along it is then computed once per
    row (see cstyle's _Emitter), so that broadcast is no cut: a softmax is one kernel,
    not three. Inside a row reduce's loop, a reduce reached other than through such a
    broadcast would run once per element of the loop (a matmul under a row sum): cut."""
    if n.op is Op.GATHER and i == 0:
        return True, None
    src = n.src[i]
    if _broadcasts(n):
        if row is not None and row[0] == n.shape and _along_last(src.shape, n.shape) and prod(src.shape) >= ROW_MIN:
            return crossed, (src.shape, False)
        return True, None
    if row is None or row[0] != n.shape:
        return crossed, None
    if n.op in REDUCE and _along_last(n.shape, src.shape):
        inside = True
    elif n.op in ELEMENTWISE or (n.op is Op.RESHAPE and _squeezed(n.shape) == _squeezed(src.shape)):
        inside = row[1]  # (a reshape that only adds or drops 1s: the same loops)
    else:
        return crossed, None
    return crossed or (inside and src.op in REDUCE), (src.shape, inside)


def _squeezed(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def _along_last(small: tuple, big: tuple) -> bool:
    """Whether `small` is `big` with its last dim of size > 1 made 1, and nothing else."""
    last = max((k for k, d in enumerate(big) if d != 1), default=None)
    return last is not None and len(small) == len(big) and small[last] == 1 and \
        all(a == b for k, (a, b) in enumerate(zip(small, big)) if k != last)


def _view_base(n: LazyBuffer, users: dict) -> LazyBuffer:
    """Where to materialize the work under a chain of movement ops that starts at n: at
    the chain's PAD if it has one, so the padded tensor is stored once (a generated copy
    whose guards drop out: see cstyle) and a convolution's windows, forward and weight
    gradient alike, read it in place as a GEMM operand; before, each launch made its own
    padded copy in Python (W2: 26 copies, ~15 ms a step). Else the node of the chain with
    the fewest elements, the nearest to n of those: between nodes of equal size, the one
    nearest the consumer stores the work in the layout the consumer reads (attention's
    heads merged back into rows, a plain GEMM operand). A piece of a split (a SHRINK of a node that only
    SHRINKs read: q, k and v of one projection) counts as the whole: the whole is
    computed once (one kernel, a GEMM's epilogue) and each piece read in place, not
    copied into a layout of its own by a kernel per piece (W4: 3 copies a layer)."""
    pad = n
    while pad.op in MOVEMENT and pad.op is not Op.PAD and pad.src[0].buffer is None:
        pad = pad.src[0]
    if pad.op is Op.PAD and pad.src[0].buffer is None:
        return pad
    best, node = n, n
    while node.op in MOVEMENT and node.src[0].buffer is None:
        src = node.src[0]
        pieces = users.get(id(src), ())
        split = node.op is Op.SHRINK and len(pieces) > 1 and all(u.op is Op.SHRINK for u in pieces)
        node = src
        if split or prod(node.shape) < prod(best.shape):
            best = node
    return best


def _read_layout(n: LazyBuffer, users: dict) -> LazyBuffer:
    """Where to materialize a shared reduce: at the end of the chain of reshapes and
    permutes that is its only reader, so the result is stored in the layout the readers
    see (a GEMM writes through the permute: patterns.py), not read through a transpose
    by each of them (W3: attention's value gradient, computed as its transpose, was read
    column by column, one cache line per element, by the q/k/v gradient concat)."""
    node = n
    while True:
        up = users.get(id(node), ())
        if len(up) != 1 or up[0].op not in (Op.RESHAPE, Op.PERMUTE) or up[0].buffer is not None:
            return node
        node = up[0]


def lower(root: LazyBuffer, mat: set) -> tuple[Kernel, list]:
    """The kernel computing `root`: its inline tree as KNodes, materialized nodes as LOADs."""
    inputs: list[LazyBuffer] = []
    slot: dict[int, int] = {}
    memo: dict[int, KNode] = {}

    def load(n: LazyBuffer) -> KNode:
        if id(n) not in slot:
            slot[id(n)] = len(inputs)
            inputs.append(n)
        return KNode(Op.LOAD, (), slot[id(n)], n.dtype, n.shape)

    def build(n: LazyBuffer, is_root: bool) -> KNode:
        if n.buffer is not None or (not is_root and id(n) in mat):
            return load(n)
        got = memo.get(id(n))
        if got is not None:
            return got
        if n.op is Op.CONTIGUOUS:
            k = build(n.src[0], False)
        else:
            k = KNode(n.op, tuple(build(s, False) for s in n.src), n.arg, n.dtype, n.shape)
        memo[id(n)] = k
        return k

    # build producers first so recursion stays shallow on deep elementwise chains
    for n in _inline_order(root, mat):
        build(n, False)
    ast = build(root, True)
    spec = tuple((n.dtype, n.shape) for n in inputs)
    return Kernel(ast, spec, _name(ast)), inputs


def _inline_order(root: LazyBuffer, mat: set) -> list[LazyBuffer]:
    order, seen, stack = [], set(), [(s, False) for s in root.src]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
        elif id(n) not in seen and n.buffer is None and id(n) not in mat:
            seen.add(id(n))
            stack.append((n, True))
            stack.extend((s, False) for s in n.src)
    return order


def _name(ast: KNode) -> str:
    ops = {n.op for n in ast.toposort()}
    kind = "scatter" if Op.SCATTER_ADD in ops else "gather" if Op.GATHER in ops else \
        "reduce" if ops & REDUCE else "elementwise"
    dims = "x".join(str(s) for s in ast.shape) or "scalar"
    return f"{kind}_{dims}"


def create_schedule(targets: list[LazyBuffer], order: list[LazyBuffer] | None = None) -> list[ScheduleItem]:
    """Kernels computing `targets`, in execution order (each as soon as its inputs are
    ready: _as_soon_as_ready). `order`: toposort(targets), when the caller (the schedule
    cache) already has it."""
    planner = _Planner(targets, order)
    items = []
    mat_nodes = planner.plan()
    for n in mat_nodes:
        if n.op is Op.COPY:
            items.append(ScheduleItem(n, None, [n.src[0]]))
            continue
        kernel, inputs = lower(n, planner.mat)
        items.append(ScheduleItem(n, kernel, inputs))
    return _as_soon_as_ready(items)


def _as_soon_as_ready(items: list[ScheduleItem]) -> list[ScheduleItem]:
    """items (in producers-first order) sorted by level: 1 + the highest level of the
    kernels that produce their inputs, ties in the given order. A depth-first order runs
    a weight gradient after the whole backward pass (once the first parameter's chain is
    done), when the output gradient and activation it reads are long out of cache, and
    keeps every activation alive until then; by level it runs right after its output
    gradient, beside the data gradient that reads the same (W3: 0.95-1.01 the time a step
    in alternating A/B; peak of live kernel outputs 85 -> 79 MB, W2 222 -> 129 MB)."""
    level: dict[int, int] = {}
    for it in items:
        level[id(it.out)] = 1 + max((level.get(id(s), -1) for s in it.inputs), default=-1)
    return [it for _, it in sorted(enumerate(items), key=lambda p: (level[id(p[1].out)], p[0]))]
