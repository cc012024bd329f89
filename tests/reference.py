"""Independent float64 reference for 2-D convolution (and its gradients).

Deliberately not the library's algorithm: no im2col matrix, no blocking. For every kernel tap
(i, j) and every group, the input pixels that tap sees form one strided slice of the padded
input; the tap's contribution to all output positions at once is a plain channel contraction
of that slice with w[:, :, i, j]. Everything is float64 whatever the input dtype.

Conventions are PyTorch's: x (N, C, H, W), w (K, C/groups, kh, kw), b (K,) or None,
y (N, K, Ho, Wo) with Ho = (H + pad_top + pad_bottom - dil_h*(kh-1) - 1) // stride_h + 1.

`stride` and `dilation` are (h, w) pairs. `padding` is an (h, w) pair of ints (symmetric), or
a pair of pairs ((top, bottom), (left, right)) for the asymmetric padding that "same" needs.
"""

import numpy as np


def pair(v):
    """int or (h, w) -> (h, w)."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    h, w = v
    return h, w


def padding4(padding):
    """(h, w) or ((top, bottom), (left, right)) -> (top, bottom, left, right)."""
    ph, pw = pair(padding)
    top, bottom = pair(ph)
    left, right = pair(pw)
    return top, bottom, left, right


def same_padding(kernel, dilation):
    """PyTorch's padding="same" for stride 1: the odd extra goes on the bottom/right."""
    pads = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def out_size(size, pad_lo, pad_hi, k, stride, dilation):
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, cg, kh, kw = w_shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    top, bottom, left, right = padding4(padding)
    assert c == cg * groups and k % groups == 0, "bad reference arguments"
    ho = out_size(h, top, bottom, kh, sh, dh)
    wo = out_size(w, left, right, kw, sw, dw)
    assert ho >= 1 and wo >= 1, "kernel larger than the padded input"
    return dict(
        n=n,
        c=c,
        h=h,
        w=w,
        k=k,
        cg=cg,
        kg=k // groups,
        kh=kh,
        kw=kw,
        sh=sh,
        sw=sw,
        dh=dh,
        dw=dw,
        top=top,
        bottom=bottom,
        left=left,
        right=right,
        ho=ho,
        wo=wo,
    )


def _tap_slices(g, i, j):
    """Index of the padded-input pixels that kernel tap (i, j) multiplies, for all outputs."""
    r0, c0 = i * g["dh"], j * g["dw"]
    rows = slice(r0, r0 + g["sh"] * (g["ho"] - 1) + 1, g["sh"])
    cols = slice(c0, c0 + g["sw"] * (g["wo"] - 1) + 1, g["sw"])
    return rows, cols


def conv2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    g = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    xp = np.pad(x, ((0, 0), (0, 0), (g["top"], g["bottom"]), (g["left"], g["right"])))
    y = np.zeros((g["n"], g["k"], g["ho"], g["wo"]))
    for grp in range(groups):
        cs = slice(grp * g["cg"], (grp + 1) * g["cg"])
        ks = slice(grp * g["kg"], (grp + 1) * g["kg"])
        for i in range(g["kh"]):
            for j in range(g["kw"]):
                rows, cols = _tap_slices(g, i, j)
                patch = xp[:, cs, rows, cols]  # (N, Cg, Ho, Wo)
                # y[n, k, :, :] += sum_c w[k, c, i, j] * patch[n, c, :, :]
                y[:, ks] += np.einsum("kc,nchw->nkhw", w[ks, :, i, j], patch)
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(dy, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Gradients of sum(conv2d_ref(x, w, b) * dy) -> (dx, dw, db)."""
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    g = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    assert dy.shape == (g["n"], g["k"], g["ho"], g["wo"]), "bad reference grad shape"
    xp = np.pad(x, ((0, 0), (0, 0), (g["top"], g["bottom"]), (g["left"], g["right"])))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for grp in range(groups):
        cs = slice(grp * g["cg"], (grp + 1) * g["cg"])
        ks = slice(grp * g["kg"], (grp + 1) * g["kg"])
        for i in range(g["kh"]):
            for j in range(g["kw"]):
                rows, cols = _tap_slices(g, i, j)
                # each output position scatters its gradient back to the pixel this tap read
                dxp[:, cs, rows, cols] += np.einsum("kc,nkhw->nchw", w[ks, :, i, j], dy[:, ks])
                dw[ks, :, i, j] = np.einsum("nkhw,nchw->kc", dy[:, ks], xp[:, cs, rows, cols])
    dx = dxp[:, :, g["top"] : g["top"] + g["h"], g["left"] : g["left"] + g["w"]]
    db = dy.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(dx), dw, db


# --- magnitudes of the summed terms, for the tolerance rule --------------------------------


def conv2d_scale(x, w, b, stride, padding, dilation, groups):
    """Per output element: the sum of |terms| that make it up."""
    return conv2d_ref(
        np.abs(x), np.abs(w), None if b is None else np.abs(b), stride, padding, dilation, groups
    )


def conv2d_backward_scale(dy, x, w, stride, padding, dilation, groups):
    """Per gradient element: the sum of |terms| (dx from |dy|,|w|; dw from |dy|,|x|)."""
    return conv2d_backward_ref(np.abs(dy), np.abs(x), np.abs(w), stride, padding, dilation, groups)


# --- conv1d: conv2d with H = 1 -------------------------------------------------------------


def conv1d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """x (N, C, L), w (K, C/g, kl); padding int or (left, right)."""
    pad = padding if isinstance(padding, tuple) else (padding, padding)
    x = np.asarray(x, np.float64)[:, :, None, :]
    w = np.asarray(w, np.float64)[:, :, None, :]
    y = conv2d_ref(x, w, b, (1, stride), ((0, 0), pad), (1, dilation), groups)
    return y[:, :, 0, :]


def conv1d_backward_ref(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    pad = padding if isinstance(padding, tuple) else (padding, padding)
    dx, dw, db = conv2d_backward_ref(
        np.asarray(dy, np.float64)[:, :, None, :],
        np.asarray(x, np.float64)[:, :, None, :],
        np.asarray(w, np.float64)[:, :, None, :],
        (1, stride),
        ((0, 0), pad),
        (1, dilation),
        groups,
    )
    return dx[:, :, 0, :], dw[:, :, 0, :], db
