//! The response-time sketch of the StackState process agent (variant A): sketches-go v1.1.1's
//! `LogCollapsingLowestDenseDDSketch(0.01, 1024)`, kept as sparse `(index, count)` bins instead of a
//! dense array, and written byte for byte as its `ToProto` is marshalled (spec http-inspection §2.4).
//!
//! Only the mapping has to be exact: a receiver merges our sketches with real agents' ones, which
//! it can only do when gamma and the index offset are equal. The bins of one interval are few
//! (one per distinct response time at 1 % resolution), so the flow table stores them sparse and the
//! dense, contiguous form exists only on the wire.

use crate::encode::proto;

pub const RELATIVE_ACCURACY: f64 = 0.01;
pub const MAX_BINS: i32 = 1024;
/// The bin index that stands for the sketch's zeroCount (a response time of exactly 0).
pub const ZERO: i16 = i16::MIN;

/// One sketch bin of one status code: what the flow table stores, sorted by (code, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin {
    pub code: u16,
    pub index: i16,
    pub count: u32,
}

/// sketches-go's `minIndexableValue` for α = 0.01: max(exp(MinInt32/multiplier + 1),
/// 2^-1022·γ). Values at or below it count as zero (tested against the formula below).
const MIN_INDEXABLE: f64 = 2.2700248455477507e-308;
/// sketches-go's `maxIndexableValue` for α = 0.01: exp(709.4361393031)/(1+α). Larger values are
/// rejected by `DDSketch.Add`, so they are here too.
const MAX_INDEXABLE: f64 = 1.2585752536124683e308;

/// γ = (1+α)/(1−α), the ratio between the bounds of one bin; the only mapping field on the wire.
pub fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// 1/ln(γ), computed as sketches-go does: `1/log1p(2α/(1−α))`. This is not bit-equal to
/// `1/ln(gamma())` (it is 2.2e-13 smaller), and values near bin boundaries would land differently.
fn multiplier() -> f64 {
    1.0 / (2.0 * RELATIVE_ACCURACY / (1.0 - RELATIVE_ACCURACY)).ln_1p()
}

/// The bin of a response time in seconds: ZERO for 0 (and anything <= minIndexableValue), the
/// sketches-go index otherwise (truncate toward zero, minus 1 when negative, exactly as Go's
/// LogarithmicMapping.Index), clamped into i16 (ZERO+1 ..= i16::MAX); None for NaN/negative/inf
/// and for values above sketches-go's maxIndexableValue (≈1.26e308, which it rejects too).
///
/// The clamp only touches values below 2.4e-285 s or above 4.2e284 s, which no clock produces.
pub fn index(seconds: f64) -> Option<i16> {
    if !(0.0..=MAX_INDEXABLE).contains(&seconds) {
        return None;
    }
    if seconds <= MIN_INDEXABLE {
        return Some(ZERO);
    }
    let x = ln(seconds) * multiplier();
    // Go: `if index >= 0 { int(index) } else { int(index) - 1 }`; the float is within ±35500 here.
    let i = if x >= 0.0 { x as i64 } else { x as i64 - 1 };
    Some(i.clamp(i64::from(ZERO) + 1, i64::from(i16::MAX)) as i16)
}

/// The value a bin stands for, as sketches-go's `LogarithmicMapping.Value`: exp(index/multiplier)·(1+α),
/// i.e. (1+α)·γ^index. A quantile of the sketch is one of these.
pub fn representative(index: i32) -> f64 {
    exp(f64::from(index) / multiplier()) * (1.0 + RELATIVE_ACCURACY)
}

/// ln(x) for a finite x > 0, as Go's pure `math.Log` computes it (FreeBSD's `e_log.c`, fdlibm:
/// under 1 ulp). The agent's only other use of libm was this and [`exp`]: with both written here
/// the binary no longer links `libm.so.6`, whose mapped pages were ~0.5 MiB of the agent's RSS
/// (benches/README.md, "What holds the RSS"). Written as sketches-go's own fallback is, so bin
/// boundaries fall where Go's pure implementation puts them. (Go's own amd64 build of `math.Log`,
/// and its amd64/arm64 `math.Exp`, are assembly: neither this nor glibc is bit-identical to those;
/// a value within an ulp or two of a bin boundary can fall in the neighbouring bin.)
fn ln(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe62e42_fee00000); // 6.931_471_803_691_238_164_90e-1
    const LN2_LO: f64 = f64::from_bits(0x3dea39ef_35793c76); // 1.908_214_929_270_587_700_02e-10
    const L1: f64 = f64::from_bits(0x3fe55555_55555593); // 6.666_666_666_666_735_130e-1
    const L2: f64 = f64::from_bits(0x3fd99999_9997fa04); // 3.999_999_999_940_941_908e-1
    const L3: f64 = f64::from_bits(0x3fd24924_94229359); // 2.857_142_874_366_239_149e-1
    const L4: f64 = f64::from_bits(0x3fcc71c5_1d8e78af); // 2.222_219_843_214_978_396e-1
    const L5: f64 = f64::from_bits(0x3fc74664_96cb03de); // 1.818_357_216_161_805_012e-1
    const L6: f64 = f64::from_bits(0x3fc39a09_d078c69f); // 1.531_383_769_920_937_332e-1
    const L7: f64 = f64::from_bits(0x3fc2f112_df3e5244); // 1.479_819_860_511_658_591e-1
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // frexp: x = f1 * 2^ki with f1 in [0.5, 1); subnormals scaled up by 2^54 first.
    let (x, bias) = if x < f64::MIN_POSITIVE { (x * 18_014_398_509_481_984.0, 54) } else { (x, 0) };
    let bits = x.to_bits();
    let mut ki = ((bits >> 52) & 0x7ff) as i32 - 1022 - bias;
    let mut f1 = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    if f1 < std::f64::consts::FRAC_1_SQRT_2 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// e^x, as Go's pure `math.Exp` computes it (FreeBSD's `e_exp.c`, fdlibm: under 1 ulp). See [`ln`].
fn exp(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe62e42_fee00000); // 6.931_471_803_691_238_164_90e-1
    const LN2_LO: f64 = f64::from_bits(0x3dea39ef_35793c76); // 1.908_214_929_270_587_700_02e-10
    const LOG2_E: f64 = f64::from_bits(0x3ff71547_652b82fe); // 1.442_695_040_888_963_387_00
    const OVERFLOW: f64 = f64::from_bits(0x40862e42_fefa39ef); // 7.097_827_128_933_839_730_96e2
    const UNDERFLOW: f64 = f64::from_bits(0xc0874910_d52d3051); // -7.451_332_191_019_411_084_20e2
    const NEAR_ZERO: f64 = 1.0 / (1u64 << 28) as f64;
    const P1: f64 = f64::from_bits(0x3fc55555_55555555); // 1.666_666_666_666_666_574_15e-1 (Go's; fdlibm's ends 553e)
    const P2: f64 = f64::from_bits(0xbf66c16c_16bebd93); // -2.777_777_777_701_559_338_42e-3
    const P3: f64 = f64::from_bits(0x3f11566a_af25de2c); // 6.613_756_321_437_934_361_17e-5
    const P4: f64 = f64::from_bits(0xbebbbd41_c5d26bf1); // -1.653_390_220_546_525_153_90e-6
    const P5: f64 = f64::from_bits(0x3e663769_72bea4d0); // 4.138_136_797_057_238_460_39e-8
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x > OVERFLOW {
        return f64::INFINITY;
    }
    if x < UNDERFLOW {
        return 0.0;
    }
    if -NEAR_ZERO < x && x < NEAR_ZERO {
        return 1.0 + x;
    }
    // x = k ln2 + r, |r| <= ln2/2, r carried as hi - lo.
    let k = if x < 0.0 { (LOG2_E * x - 0.5) as i32 } else { (LOG2_E * x + 0.5) as i32 };
    let hi = x - f64::from(k) * LN2_HI;
    let lo = f64::from(k) * LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    // y * 2^k in two steps, each a normal power of two (|k| <= 1075 here).
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    let half = k / 2;
    y * pow2(half) * pow2(k - half)
}

/// What a sketch holds once collapsed: its zeroCount, and the positive bins' kept range.
struct Shape {
    zero: u64,
    /// The lowest kept index (bins below it fold into it) and the highest; None when no positive bin.
    range: Option<(i32, i32)>,
    total: u64,
}

fn shape(bins: impl Iterator<Item = (i16, u32)>) -> Shape {
    let (mut zero, mut total) = (0u64, 0u64);
    let mut range: Option<(i32, i32)> = None;
    for (i, c) in bins {
        // sketches-go's AddWithCount ignores a zero count: it neither counts nor widens the store.
        if c == 0 {
            continue;
        }
        total += u64::from(c);
        if i == ZERO {
            zero += u64::from(c);
            continue;
        }
        let i = i32::from(i);
        range = Some(range.map_or((i, i), |(lo, hi)| (lo.min(i), hi.max(i))));
    }
    // CollapsingLowestDenseStore keeps the MAX_BINS highest indices and folds every lower bin into
    // the lowest kept one. Its result does not depend on the order of insertion or merges: the
    // window always ends up [max − 1023, max].
    let range = range.map(|(lo, hi)| (lo.max(hi - (MAX_BINS - 1)), hi));
    Shape { zero, range, total }
}

/// Calls `each(index, count)` for every index of the positive store from its lowest kept index to
/// its highest, zeros included (the contiguous encoding), after folding the lowest bins.
fn contiguous(bins: impl Iterator<Item = (i16, u32)>, lo: i32, mut each: impl FnMut(u64)) {
    let (mut at, mut acc) = (lo, 0u64);
    for (i, c) in bins {
        if i == ZERO || c == 0 {
            continue;
        }
        let i = i32::from(i).max(lo);
        while at < i {
            each(acc);
            acc = 0;
            at += 1;
        }
        acc += u64::from(c);
    }
    each(acc);
}

/// Writes a DDSketch message body (the top-level message of ddsketch.proto: mapping=1, positiveValues=2,
/// negativeValues=3, zeroCount=4) from bins (index, count) sorted by index ascending (ZERO first if present),
/// byte-for-byte as sketches-go v1.1.1 ToProto does (§2.4): gamma only in the mapping, contiguous encoding
/// only, empty negative store `1a 00`, zeroCount only when non-zero, collapsing-lowest to MAX_BINS.
/// Bins with a zero count are ignored, and equal indices add up.
pub fn write_sketch(out: &mut Vec<u8>, bins: impl Iterator<Item = (i16, u32)> + Clone) {
    let s = shape(bins.clone());
    // IndexMapping{gamma}: indexOffset 0 and interpolation NONE are proto3 defaults.
    proto::message(out, 1, |o| proto::double(o, 1, gamma()));
    // The positive store: up to 1024 × 8 bytes, so two length bytes always suffice.
    proto::large_message(out, 2, |o| {
        if let Some((lo, _)) = s.range {
            proto::large_message(o, 2, |o| {
                contiguous(bins, lo, |c| o.extend_from_slice(&(c as f64).to_le_bytes()));
            });
            proto::sint32(o, 3, lo);
        }
    });
    // The negative store: response times are never negative, but ToProto always writes it.
    proto::message(out, 3, |_| {});
    proto::double(out, 4, s.zero as f64);
}

/// The total count of a sketch (zeroCount plus all bins), as sketches-go's `GetCount`.
pub fn count(bins: impl Iterator<Item = (i16, u32)>) -> u64 {
    bins.map(|(_, c)| u64::from(c)).sum()
}

/// The value at quantile `q` (0..=1) of the sketch these bins make, as sketches-go's
/// `GetValueAtQuantile` computes it after collapsing: None for an empty sketch or a bad `q`.
pub fn quantile(bins: impl Iterator<Item = (i16, u32)> + Clone, q: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let s = shape(bins.clone());
    if s.total == 0 {
        return None;
    }
    let rank = q * (s.total - 1) as f64;
    if rank < s.zero as f64 {
        return Some(0.0);
    }
    let (lo, hi) = s.range?;
    let rank = rank - s.zero as f64;
    // DenseStore.KeyAtRank: the first index whose cumulative count passes the rank.
    let (mut at, mut seen, mut found) = (lo, 0f64, None);
    contiguous(bins, lo, |c| {
        seen += c as f64;
        if found.is_none() && seen > rank {
            found = Some(at);
        }
        at += 1;
    });
    Some(representative(found.unwrap_or(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite doubles of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn ln_and_exp_are_within_an_ulp_of_libm() {
        // A fixed xorshift stream: inputs spread over every exponent ln sees, and over exp's range.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut worst_ln, mut worst_exp) = (0, 0);
        for _ in 0..200_000 {
            let r = next();
            // Positive, finite, normal or subnormal: any exponent but 0x7ff, any mantissa.
            let x = f64::from_bits(r % (0x7ffu64 << 52));
            if x > 0.0 {
                worst_ln = worst_ln.max(ulps(ln(x), x.ln()));
            }
            let y = (next() as f64 / u64::MAX as f64) * 1_450.0 - 740.0;
            let (ours, theirs) = (exp(y), y.exp());
            if theirs >= f64::MIN_POSITIVE {
                worst_exp = worst_exp.max(ulps(ours, theirs));
            }
        }
        assert!(worst_ln <= 1, "ln: {worst_ln} ulps from libm's");
        assert!(worst_exp <= 1, "exp: {worst_exp} ulps from libm's");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(std::f64::consts::E), 1.0);
        assert!(ln(0.0) == f64::NEG_INFINITY && ln(-1.0).is_nan() && ln(f64::INFINITY) == f64::INFINITY);
        assert!(exp(710.0) == f64::INFINITY && exp(-746.0) == 0.0 && exp(f64::NAN).is_nan());
        // Every bin's representative value maps back to its bin, as with libm's functions.
        for i in -2_000..2_000 {
            assert_eq!(index(representative(i)).map(i32::from), Some(i), "bin {i}");
        }
    }

    fn sketch(bins: &[(i16, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_sketch(&mut out, bins.iter().copied());
        out
    }

    const GAMMA_LE: [u8; 8] = [0xfd, 0x4a, 0x81, 0x5a, 0xbf, 0x52, 0xf0, 0x3f];

    #[test]
    fn constants_match_sketches_go() {
        assert_eq!(gamma().to_le_bytes(), GAMMA_LE);
        // minIndexableValue and maxIndexableValue from their formulas in logarithmic_mapping.go
        // (math.Exp of the int32 bound overflows to +Inf for the maximum; min() drops it).
        let m = multiplier();
        let min = (f64::from(i32::MIN) / m + 1.0).exp().max(2.2250738585072014e-308 * gamma());
        assert_eq!(min, MIN_INDEXABLE);
        let max = ((f64::from(i32::MAX) / m - 1.0).exp()).min(7.094361393031e+02f64.exp() / 1.01);
        assert_eq!(max, MAX_INDEXABLE);
        assert_ne!(m, 1.0 / gamma().ln(), "log1p form, not ln(γ)");
        assert_eq!(m, 49.998333288886556);
    }

    /// The spec's worked example (§2.5) and a few more from the Go formula.
    #[test]
    fn indices_and_representatives() {
        for (v, i, rep) in [
            (0.005, -265, 0.0050406),
            (0.020, -196, 0.0200369),
            (0.025, -185, 0.0249677),
            (1.5, 20, 1.5067630),
            (1.0, 0, 1.01),
            (2.0, 34, 1.9936617),
            (4.0, 69, 4.0148353),
        ] {
            assert_eq!(index(v), Some(i), "{v}");
            let r = representative(i32::from(i));
            assert!((r - rep).abs() < 5e-8, "{v}: {r}");
            // The relative-accuracy guarantee: the representative is within 1 % of the value.
            assert!((r - v).abs() <= RELATIVE_ACCURACY * v * (1.0 + 1e-12), "{v}: {r}");
        }
    }

    #[test]
    fn index_edges() {
        assert_eq!(index(0.0), Some(ZERO));
        assert_eq!(index(-0.0), Some(ZERO));
        assert_eq!(index(MIN_INDEXABLE), Some(ZERO));
        assert_eq!(index(f64::from_bits(MIN_INDEXABLE.to_bits() + 1)), Some(ZERO + 1), "clamped");
        assert_eq!(index(1e-300), Some(ZERO + 1));
        assert_eq!(index(1e300), Some(i16::MAX));
        assert_eq!(index(MAX_INDEXABLE), Some(i16::MAX));
        for bad in [f64::NAN, -1.0, -1e-9, f64::INFINITY, f64::NEG_INFINITY, f64::MAX] {
            assert_eq!(index(bad), None, "{bad}");
        }
        // Every value maps to a bin whose representative is within 1 %.
        let mut v = 1e-7;
        while v < 1e5 {
            let r = representative(i32::from(index(v).unwrap()));
            assert!((r - v).abs() <= RELATIVE_ACCURACY * v * (1.0 + 1e-12), "{v}: {r}");
            v *= 1.0037;
        }
    }

    /// §2.5: the sketch of the single 404 response (0.005 s), and one holding a single 0.0.
    #[test]
    fn spec_bytes() {
        let mut want = vec![0x0a, 0x09, 0x09];
        want.extend_from_slice(&GAMMA_LE);
        want.extend_from_slice(&[0x12, 0x0d, 0x12, 0x08, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x18, 0x91, 0x04, 0x1a, 0x00]);
        assert_eq!(sketch(&[(-265, 1)]), want);

        let mut want = vec![0x0a, 0x09, 0x09];
        want.extend_from_slice(&GAMMA_LE);
        want.extend_from_slice(&[0x12, 0x00, 0x1a, 0x00, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(sketch(&[(ZERO, 1)]), want);
    }

    fn doubles(b: &[u8]) -> Vec<f64> {
        b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn contiguous_counts_with_zeros_and_offset() {
        // The "200" sketch of §2.5: 2 at −196, 1 at −185.
        let b = sketch(&[(-196, 2), (-185, 1)]);
        assert_eq!(&b[11..14], [0x12, 12 * 8 + 5, 0x12]);
        assert_eq!(b[14], 12 * 8);
        let counts = doubles(&b[15..15 + 96]);
        assert_eq!(counts, [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        // offset −196 zigzags to 391 = 87 03.
        assert_eq!(&b[111..], [0x18, 0x87, 0x03, 0x1a, 0x00]);
        // Index 0 is the proto3 default: no offset field at all; a positive one zigzags even.
        assert_eq!(&sketch(&[(0, 3)])[11..], [0x12, 0x0a, 0x12, 0x08, 0, 0, 0, 0, 0, 0, 0x08, 0x40, 0x1a, 0x00]);
        assert_eq!(&sketch(&[(20, 1)])[23..], [0x18, 40, 0x1a, 0x00]);
        // Zero counts do not widen the store, equal indices add up, zero and positive coexist.
        assert_eq!(sketch(&[(ZERO, 2), (-300, 0), (5, 1), (5, 2), (9, 0)]), {
            let mut w = sketch(&[(5, 3)]);
            w.extend_from_slice(&[0x21, 0, 0, 0, 0, 0, 0, 0, 0x40]);
            w
        });
    }

    #[test]
    fn empty_sketch_is_mapping_and_two_empty_stores() {
        let mut want = vec![0x0a, 0x09, 0x09];
        want.extend_from_slice(&GAMMA_LE);
        want.extend_from_slice(&[0x12, 0x00, 0x1a, 0x00]);
        assert_eq!(sketch(&[]), want);
        assert_eq!(sketch(&[(7, 0), (ZERO, 0)]), want);
    }

    /// Values spanning more than 1024 bins: the lowest fold into the lowest kept bin, the count is
    /// kept, and the store is exactly 1024 bins wide.
    #[test]
    fn collapsing_lowest() {
        let bins: Vec<(i16, u32)> = vec![(ZERO, 1), (-2000, 4), (-1500, 2), (-977, 1), (-976, 3), (0, 5), (46, 7)];
        let b = sketch(&bins);
        // 1024 doubles = 8192 bytes: store = 12 80 40 <8192> 18 <zigzag(46-1023 = -977) = 1953 = a1 0f>.
        assert_eq!(&b[11..17], [0x12, 0x86, 0x40, 0x12, 0x80, 0x40]);
        let counts = doubles(&b[17..17 + 8192]);
        assert_eq!(counts.len(), 1024);
        assert_eq!(counts[0], 4.0 + 2.0 + 1.0, "-2000, -1500 and -977 fold into -977");
        assert_eq!(counts[1], 3.0);
        assert_eq!(counts[977], 5.0);
        assert_eq!(counts[1023], 7.0);
        assert_eq!(counts.iter().sum::<f64>(), 22.0, "the positive count is preserved");
        assert_eq!(&b[17 + 8192..17 + 8192 + 3], [0x18, 0xa1, 0x0f]);
        assert_eq!(&b[17 + 8195..], [0x1a, 0x00, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        // Exactly 1024 bins wide: nothing folds.
        let b = sketch(&[(-1023, 1), (0, 1)]);
        let counts = doubles(&b[17..17 + 8192]);
        assert_eq!((counts[0], counts[1023]), (1.0, 1.0));
        // The extremes of i16: everything below i16::MAX − 1023 lands in one bin.
        let b = sketch(&[(ZERO + 1, 9), (0, 1), (i16::MAX, 1)]);
        let counts = doubles(&b[17..17 + 8192]);
        assert_eq!((counts[0], counts[1023]), (10.0, 1.0));
    }

    #[test]
    fn quantiles_as_sketches_go() {
        // §2.5 "200": 0.020, 0.020, 0.025.
        let b = [(-196i16, 2u32), (-185, 1)];
        let q = |q| quantile(b.iter().copied(), q).unwrap();
        assert_eq!(q(0.0), representative(-196));
        assert_eq!(q(0.5), representative(-196));
        // rank = q·(count − 1) = 1.9 < 2: sketches-go's p95 of three values is the second.
        assert_eq!(q(0.95), representative(-196));
        assert_eq!(q(1.0), representative(-185));
        assert_eq!(quantile([(ZERO, 1u32), (0, 1)].into_iter(), 0.0), Some(0.0));
        assert_eq!(quantile([(ZERO, 1u32), (0, 1)].into_iter(), 1.0), Some(1.01));
        assert_eq!(quantile(std::iter::empty(), 0.5), None);
        assert_eq!(quantile([(3i16, 1u32)].into_iter(), 1.5), None);
        // After collapsing, the lowest quantile is the lowest kept bin.
        assert_eq!(quantile([(-5000i16, 1u32), (1000, 1)].into_iter(), 0.0), Some(representative(1000 - 1023)));
        assert_eq!(count([(ZERO, 2u32), (1, 3)].into_iter()), 5);
    }
}
