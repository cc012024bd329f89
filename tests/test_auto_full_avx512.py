"""auto's table on CPUs whose 512-bit multiply-adds run at full rate (hw.h, full_avx512: two
512-bit FMA pipes, measured at load; FASTCONV_FULL_AVX512=0|1 pins it). conftest pins the
half-rate table (Zen 4's) for the rest of the suite; these tests set it themselves, each in a
process of its own (the hardware description is made once, at load)."""

import json

import pytest

from _isa import AVAILABLE_ISAS, run_isa_json

pytestmark = pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")

_CHOOSE = (
    "import json, sys\n"
    "from fastconv import _core, hardware\n"
    "cases = json.loads(sys.argv[2])\n"
    "got = [_core.ALGO_NAMES[_core.conv2d_choose(d, direction)] for d, direction in cases]\n"
    "print(json.dumps([hardware()['full_avx512'], got]))"
)


def _desc(n, c, h, k, kk=3, s=1, p=1):
    return [n, c, h, h, k, kk, kk, s, s, p, p, 1, 1, 1]


FWD, DATA, WEIGHT = 0, 1, 2

#: (descriptor, direction, the full-rate choice, the half-rate choice) with the AVX-512 tables:
#: the rules api.cpp changes with full_avx512, each against the table it replaces.
CASES = [
    # one image's fused Winograd with 128+ channels gives way to direct (forward, data gradient)
    (_desc(1, 256, 14, 256), FWD, "direct", "winograd"),
    (_desc(1, 512, 14, 512), FWD, "direct", "winograd"),
    (_desc(1, 256, 14, 256), DATA, "direct", "winograd"),
    (_desc(1, 512, 14, 512), DATA, "direct", "winograd"),
    # ... forwards from 96 input channels (GoogLeNet's 112>224 and 96>208), not 64, and not
    # the data gradient under 128
    (_desc(1, 112, 14, 224), FWD, "direct", "winograd"),
    (_desc(1, 96, 14, 208), FWD, "direct", "winograd"),
    (_desc(1, 64, 14, 128), FWD, "winograd", "winograd"),
    (_desc(1, 96, 14, 208), DATA, "winograd", "winograd"),
    # ... but not its weight gradient, two images (32 tiles) or 28x28 planes
    (_desc(1, 256, 14, 256), WEIGHT, "winograd", "winograd"),
    (_desc(2, 256, 14, 256), FWD, "winograd", "winograd"),
    (_desc(1, 256, 28, 256), FWD, "winograd", "winograd"),
    # 3x3/2 weight gradients onto 7-wide rows and narrow same 3x3 ones stay on im2col
    (_desc(1, 512, 14, 512, s=2), WEIGHT, "im2col", "direct"),
    (_desc(8, 512, 14, 512, s=2), WEIGHT, "im2col", "direct"),
    (_desc(1, 512, 7, 512), WEIGHT, "im2col", "direct"),
    (_desc(1, 256, 28, 256, s=2), WEIGHT, "direct", "direct"),  # onto 14 wide: both
    # no FFT at one image; from 8 images as before, but a forward of a low ratio (L4) on direct
    # (32-channel tile); a unit-stride forward on under 8 channels (L1) on im2col
    (_desc(1, 3, 128, 96, kk=11, p=0), FWD, "im2col", "fft"),
    (_desc(1, 3, 128, 96, kk=11, p=0), WEIGHT, "direct", "fft"),
    (_desc(8, 64, 64, 128, kk=9, p=0), FWD, "fft", "fft"),
    (_desc(8, 128, 16, 128, kk=7, p=0), FWD, "direct", "fft"),
    (_desc(8, 128, 16, 128, kk=7, p=0), WEIGHT, "direct", "fft"),
    (_desc(8, 128, 16, 128, kk=7, p=0), DATA, "fft", "fft"),
    (_desc(8, 3, 128, 96, kk=11, p=0), DATA, "im2col", "fft"),  # L1: few channels, 256
    # one image's data gradient of an unpadded 9x9 (L2, else FFT) or 3x3 (L5, else im2col)
    (_desc(1, 64, 64, 128, kk=9, p=0), DATA, "direct", "fft"),
    (_desc(1, 384, 13, 384, p=0), DATA, "direct", "im2col"),
    # ... and its weight gradient (32-channel weight-gradient tile), not Winograd
    (_desc(1, 384, 13, 384, p=0), WEIGHT, "direct", "winograd"),
    # 7x7 planes (128+ channels) at 2-8 images off Winograd too; not at 16, nor 8x8 planes
    (_desc(8, 512, 7, 512), FWD, "direct", "winograd"),
    (_desc(8, 512, 7, 512), DATA, "direct", "winograd"),
    (_desc(16, 512, 7, 512), FWD, "winograd", "winograd"),
    (_desc(8, 384, 8, 384), FWD, "winograd", "winograd"),
    # a plain 1x1 of one image with 4x as many outputs (256+) on 14x14+; strided at 8 images
    (_desc(1, 128, 28, 512, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(1, 256, 56, 64, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(8, 512, 28, 1024, kk=1, s=2, p=0), FWD, "direct", "gemm1x1"),
    # the 1x1 rules of the AVX2 tables (below) do not apply here: direct's 32-channel tile
    (_desc(8, 512, 7, 2048, kk=1, p=0), DATA, "direct", "direct"),
    (_desc(8, 2048, 7, 512, kk=1, p=0), DATA, "direct", "direct"),
    (_desc(8, 2048, 7, 512, kk=1, p=0), FWD, "direct", "direct"),
    (_desc(8, 512, 7, 2048, kk=1, p=0), FWD, "direct", "direct"),
    # unit-stride 1x1 data gradients from 128 channels each way: 7x7-8x8 planes at any batch,
    # up to 17x17 at 1-4 images or with dx's channels at least dy's; not 28x28, nor 8 images of
    # 512>1024 at 14x14, nor 64 channels of dy, nor strided
    (_desc(1, 512, 7, 2048, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(8, 832, 7, 128, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(1, 1024, 14, 256, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(4, 512, 14, 1024, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(8, 1024, 14, 256, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(1, 768, 17, 192, kk=1, p=0), DATA, "direct", "gemm1x1"),
    (_desc(8, 256, 14, 512, kk=1, p=0), DATA, "direct", "gemm1x1"),  # (reads dy's planes)
    (_desc(8, 1024, 14, 2048, kk=1, p=0), DATA, "gemm1x1", "gemm1x1"),  # (dy past half the L2)
    (_desc(1, 256, 28, 128, kk=1, p=0), DATA, "gemm1x1", "gemm1x1"),
    (_desc(1, 480, 14, 64, kk=1, p=0), DATA, "gemm1x1", "gemm1x1"),
    (_desc(1, 1024, 14, 2048, kk=1, s=2, p=0), DATA, "gemm1x1", "gemm1x1"),
    # plain 1x1 forwards of 2-8 images with 832+ input channels on planes up to 14x14 (the
    # filters joined) while the input fits two L2s (the machine's own; these 1-1.6 MB, not 8
    # images of 2048 at 14x14, 12.8 MB); not 768 channels at 17x17 or 16 images
    (_desc(2, 2048, 8, 320, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(2, 1024, 14, 256, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(2, 1024, 14, 512, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(8, 832, 7, 384, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(8, 2048, 14, 512, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),  # (past half the L2)
    (_desc(8, 768, 17, 192, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(8, 256, 14, 1024, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(16, 1024, 14, 256, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    # ... and, reading the input's own planes, up to 8 images on 14x14 planes, 2-8 on smaller
    # ones from 256 outputs; not one image on 7x7, nor an image's input past half the L2 (these
    # 200-512 KiB, the 2048 channels at 14x14 1.6 MB: any L2 of 1-2 MiB)
    (_desc(1, 512, 14, 256, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(8, 480, 14, 192, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(8, 2048, 8, 384, kk=1, p=0), FWD, "direct", "gemm1x1"),
    (_desc(1, 2048, 7, 512, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(8, 2048, 8, 192, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(16, 512, 14, 1024, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    # strided data gradients on phase planes: with the 32-channel tile from 8 images onto 7x7
    # phases and one image's onto 14+ wide ones; else from two images onto 14+ (both tables),
    # and one image's onto 28+
    (_desc(8, 512, 14, 512, s=2), DATA, "direct", "im2col"),
    (_desc(4, 512, 14, 512, s=2), DATA, "im2col", "im2col"),
    (_desc(1, 256, 28, 256, s=2), DATA, "direct", "im2col"),
    (_desc(2, 256, 28, 256, s=2), DATA, "direct", "direct"),
    (_desc(1, 128, 56, 128, s=2), DATA, "direct", "direct"),
    (_desc(1, 192, 17, 320, s=2, p=0), DATA, "im2col", "im2col"),
]

#: The same with the AVX2 tables on a full_avx512 core: the rules that follow the core
#: (FFT, the narrow weight gradients, the 1x1s), not the AVX-512-only one (Winograd stays).
CASES_AVX2 = [
    (_desc(1, 256, 14, 256), FWD, "winograd", "winograd"),
    (_desc(1, 256, 14, 256), DATA, "winograd", "winograd"),
    (_desc(1, 512, 7, 512), WEIGHT, "im2col", "direct"),
    (_desc(1, 512, 14, 512, s=2), WEIGHT, "im2col", "im2col"),  # (14-wide rows on AVX2 anyway)
    (_desc(1, 3, 128, 96, kk=11, p=0), FWD, "direct", "fft"),
    (_desc(1, 3, 128, 96, kk=11, p=0), WEIGHT, "fft", "fft"),  # (L1: the ratio rule)
    # (one image's unpadded 5x5-9x9 data gradients: the tiles leave the border's products out)
    (_desc(1, 64, 64, 128, kk=9, p=0), DATA, "direct", "fft"),
    (_desc(1, 64, 64, 128, kk=9, p=0), WEIGHT, "direct", "direct"),  # (L2: direct's 256)
    # (the rules of direct's 32-channel tile, AVX-512 only, but L4's forward at 8 images)
    (_desc(8, 128, 16, 128, kk=7, p=0), FWD, "direct", "fft"),
    (_desc(8, 128, 16, 128, kk=7, p=0), WEIGHT, "fft", "fft"),
    (_desc(8, 3, 128, 96, kk=11, p=0), DATA, "fft", "fft"),
    (_desc(1, 384, 13, 384, p=0), DATA, "im2col", "im2col"),
    (_desc(1, 384, 13, 384, p=0), WEIGHT, "winograd", "winograd"),
    (_desc(8, 512, 7, 512), FWD, "winograd", "winograd"),
    (_desc(1, 128, 28, 512, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(8, 512, 28, 1024, kk=1, s=2, p=0), FWD, "gemm1x1", "gemm1x1"),
    # 1x1 data gradients on direct only from 2048 input channels of the layer; a plain 1x1
    # forward of 2048 input channels at 2+ images stays on gemm1x1
    (_desc(8, 512, 7, 2048, kk=1, p=0), DATA, "gemm1x1", "direct"),
    (_desc(8, 2048, 7, 512, kk=1, p=0), DATA, "direct", "direct"),
    (_desc(8, 2048, 7, 512, kk=1, p=0), FWD, "gemm1x1", "direct"),
    (_desc(8, 512, 7, 2048, kk=1, p=0), FWD, "direct", "direct"),
    (_desc(8, 2048, 8, 320, kk=1, p=0), FWD, "gemm1x1", "gemm1x1"),
    (_desc(1, 1024, 14, 256, kk=1, p=0), DATA, "gemm1x1", "gemm1x1"),
]


def _choices(isa, full, cases):
    arg = json.dumps([[d, direction] for d, direction, _, _ in cases])
    return run_isa_json(isa, _CHOOSE, arg, FASTCONV_FULL_AVX512=full)


@pytest.mark.parametrize("isa,cases", [("avx512", CASES), ("avx2", CASES_AVX2)])
def test_full_rate_table(isa, cases):
    full, got = _choices(isa, "1", cases)
    assert full is True
    assert got == [c[2] for c in cases]


@pytest.mark.parametrize("isa,cases", [("avx512", CASES), ("avx2", CASES_AVX2)])
def test_half_rate_table(isa, cases):
    full, got = _choices(isa, "0", cases)
    assert full is False
    assert got == [c[3] for c in cases]


def test_the_generic_table_ignores_the_flag():
    """full_avx512 rules need SIMD tables; the generic table keeps its own either way."""
    full, got = _choices("generic", "1", CASES)
    assert full is True
    assert got == _choices("generic", "0", CASES)[1]


_CHOOSE_PREPARED = (
    "import json, sys\n"
    "from fastconv import _core, hardware\n"
    "cases = json.loads(sys.argv[2])\n"
    "got = [_core.ALGO_NAMES[_core.conv2d_choose_prepared(d)] for d in cases]\n"
    "print(json.dumps([hardware()['full_avx512'], got]))"
)


def _one(n, c, h, k, s=1):  # a 1x1, unpadded
    return _desc(n, c, h, k, kk=1, s=s, p=0)


#: A plan's forward (its filters prepared once): strided 1x1s on direct's blocked tiles, with
#: the AVX-512 tables at full rate onto 28x28 too at 1-4 images and from 512 input channels at
#: 8; else onto 14x14 and smaller at 1-2. Unit-stride 1x1s of one image on planes up to 17x17:
#: direct from 96 outputs at full rate, from 256 else; from 128 outputs at full rate, of 2-8
#: images on planes up to 14x14 and of 2-4 on 17x17. (descriptor, full-rate choice, half-rate
#: choice)
PREPARED = [
    (_one(1, 256, 56, 512, 2), "direct", "gemm1x1"),
    (_one(4, 256, 56, 512, 2), "direct", "gemm1x1"),
    (_one(8, 256, 56, 512, 2), "gemm1x1", "gemm1x1"),
    (_one(8, 1024, 14, 2048, 2), "direct", "gemm1x1"),
    (_one(2, 128, 28, 256, 2), "direct", "direct"),
    (_one(1, 528, 14, 128), "direct", "gemm1x1"),
    (_one(1, 480, 14, 96), "direct", "gemm1x1"),
    (_one(1, 768, 17, 192), "direct", "gemm1x1"),
    (_one(1, 512, 14, 64), "gemm1x1", "gemm1x1"),
    (_one(1, 256, 28, 128), "gemm1x1", "gemm1x1"),
    (_one(2, 528, 14, 128), "direct", "gemm1x1"),
    (_one(1, 1024, 14, 256), "direct", "direct"),
    (_one(2, 256, 14, 1024), "direct", "gemm1x1"),
    (_one(4, 1024, 14, 256), "direct", "gemm1x1"),
    (_one(8, 1024, 14, 512), "direct", "gemm1x1"),
    (_one(8, 480, 10, 128), "direct", "gemm1x1"),
    (_one(16, 256, 14, 1024), "gemm1x1", "gemm1x1"),
    (_one(2, 512, 14, 64), "gemm1x1", "gemm1x1"),
    (_one(8, 768, 17, 192), "gemm1x1", "gemm1x1"),
    (_one(2, 768, 17, 192), "direct", "gemm1x1"),
    (_one(4, 768, 17, 128), "direct", "gemm1x1"),
    (_one(8, 2048, 8, 320), "direct", "gemm1x1"),
    (_one(2, 1280, 8, 192), "direct", "gemm1x1"),
    (_one(16, 2048, 8, 320), "gemm1x1", "gemm1x1"),
    (_one(2, 832, 7, 256), "direct", "gemm1x1"),
    (_one(8, 832, 7, 128), "direct", "gemm1x1"),
    (_one(8, 832, 7, 64), "gemm1x1", "gemm1x1"),
    (_one(2, 512, 28, 128), "gemm1x1", "gemm1x1"),
]


#: A plan's "same" 3x3 of one image on an even 12x12 to 16x16 plane with 512+ channels each way:
#: Winograd at full rate (its fused forward's two panels a pass), where the full-rate table
#: otherwise keeps direct for under 32 F(4x4) tiles (13x13, 256 channels, 7x7); the half-rate
#: table as it was (Winograd from 14x14 to 16x16 and on 13x13, direct on 12x12 with 1024 outputs
#: and on 7x7); two images Winograd at both rates.
PREPARED_3X3 = [
    (_desc(1, 512, 14, 512), "winograd", "winograd"),
    (_desc(1, 512, 12, 1024), "winograd", "direct"),
    (_desc(1, 512, 16, 512), "winograd", "winograd"),
    (_desc(1, 512, 13, 512), "direct", "winograd"),
    (_desc(1, 256, 14, 256), "direct", "winograd"),
    (_desc(1, 512, 7, 512), "direct", "direct"),
    (_desc(2, 512, 14, 512), "winograd", "winograd"),
]


@pytest.mark.parametrize("table", [PREPARED, PREPARED_3X3], ids=["1x1", "3x3"])
@pytest.mark.parametrize("full", ["1", "0"])
def test_prepared_choice(table, full):
    arg = json.dumps([d for d, _, _ in table])
    rate, got = run_isa_json("avx512", _CHOOSE_PREPARED, arg, FASTCONV_FULL_AVX512=full)
    assert rate is (full == "1")
    assert got == [c[1] if full == "1" else c[2] for c in table]
