"""Implied volatility of one option: Jäckel's "Let's be rational" (2015), branch-free.

The price is normalised to the out-of-the-money call b(x, s) with
x = ln(F/K) <= 0 and s = sigma*sqrt(t). Jäckel's four-segment rational guess
(lower map, two rational cubics, upper map) is followed by exactly two
third-order Householder steps on the segment's transformed objective, which
reaches machine precision on the whole domain. Each option selects its
segment's inputs and evaluates one rational cubic and one objective, so the
loop over a book has no data-dependent branch and vectorises; the fixed
iteration count keeps every lane in step.
"""
import math

import numpy as np

from app.greeks.fastmath import INV_SQRT2, INV_SQRT_2PI, erfcx, exp, inverse_norm_cdf_lower, log
from app.greeks.jit import kernel

EPSILON = 2.220446049250313e-16
MIN_POSITIVE = 2.2250738585072014e-308
SQRT_DBL_MAX = 1.3407807929942596e+154
MIN_CONTROL = -(1.0 - 1.4901161193847656e-08)    # -(1 - sqrt(eps)): keeps the rational cubic's denominator positive
MAX_CONTROL = 2.0 / (EPSILON * EPSILON)           # at or above this the rational cubic is plain linear interpolation
TWO_PI = 6.283185307179586
SQRT_THREE = 1.7320508075688772
TWO_PI_OVER_SQRT_27 = 1.2091995761561452
SQRT_PI_OVER_TWO = 1.2533141373155003
PI_OVER_SIX = 0.5235987755982988
# An ITM time value is price minus intrinsic, both rounded: below this many
# epsilons of their size it is rounding noise with no volatility information.
MIN_TIME_VALUE_EPSILONS = 32.0


@kernel
def normalised_black(x, s, b_max):
    """(b, b_max - b, ln b, db/ds, (db/ds)/b) of the normalised OTM call, x <= 0.

    With h = x/s, t = s/2 both terms share exp(-(h²+t²)/2), so b, ln b and
    b'/b are formed without cancelling that factor out (no underflow for tiny s).
    """
    h = x / s
    h = 0.0 if x == 0.0 else h
    t = 0.5 * s
    half_square = 0.5 * (h * h + t * t)
    gauss = exp(-half_square)
    d1 = h + t
    d2 = h - t
    e1 = erfcx(abs(d1) * INV_SQRT2)
    e2 = erfcx(-d2 * INV_SQRT2)
    below = d1 < 0.0
    core = 0.5 * (e1 - e2)                 # b / gauss when d1 < 0
    upper_gap = 0.5 * (e1 + e2) * gauss    # b_max - b when d1 >= 0
    b = core * gauss if below else b_max - upper_gap
    gap = b_max - b if below else upper_gap
    ln_b = log(core if below else b) - (half_square if below else 0.0)
    vega = INV_SQRT_2PI * gauss
    vega_over_b = INV_SQRT_2PI / core if below else vega / b
    return b, gap, ln_b, vega, vega_over_b


@kernel
def householder_factor(newton, halley, hh3):
    return (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton * (1.0 / 6.0)))


@kernel
def rational_cubic(x, x_l, x_r, y_l, y_r, d_l, d_r, r):
    """Delbourgo–Gregory rational cubic through (x_l, y_l), (x_r, y_r) with slopes d_l, d_r."""
    h = x_r - x_l
    t = (x - x_l) / h
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    cubic = ((y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt)
             / (1.0 + (r - 3.0) * t * omt))
    linear = y_r * t + y_l * omt
    value = linear if r >= MAX_CONTROL else cubic
    return 0.5 * (y_l + y_r) if h == 0.0 else value


@kernel
def minimum_control(d_l, d_r, slope, prefer_shape):
    """Smallest control parameter that keeps the cubic monotone/convex like its end slopes."""
    monotonic = (d_l * slope >= 0.0) & (d_r * slope >= 0.0)
    convex = (d_l <= slope) & (slope <= d_r)
    concave = (d_l >= slope) & (slope >= d_r)
    slope_is_zero = abs(slope) < MIN_POSITIVE
    r1 = (d_r + d_l) / slope
    r1 = (MAX_CONTROL if prefer_shape else -math.inf) if slope_is_zero else r1
    r1 = r1 if monotonic else -math.inf
    degenerate = (abs(slope - d_l) < MIN_POSITIVE) | (abs(d_r - slope) < MIN_POSITIVE)
    r2 = max(abs((d_r - d_l) / (d_r - slope)), abs((d_r - d_l) / (slope - d_l)))
    r2 = (MAX_CONTROL if prefer_shape else -math.inf) if degenerate else r2
    r2_other = MAX_CONTROL if (monotonic & prefer_shape) else -math.inf
    r2 = r2 if (convex | concave) else r2_other
    result = max(MIN_CONTROL, max(r1, r2))
    return result if (monotonic | convex | concave) else MIN_CONTROL


@kernel
def curvature_control(x_l, x_r, y_l, y_r, d_l, d_r, second, at_right, prefer_shape):
    """Control parameter that fits the second derivative at the right (or left) end, kept shape-preserving."""
    h = x_r - x_l
    slope = (y_r - y_l) / h
    numerator = 0.5 * h * second + (d_r - d_l)
    denominator = d_r - slope if at_right else slope - d_l
    r = numerator / denominator
    r = (MAX_CONTROL if numerator > 0.0 else MIN_CONTROL) if abs(denominator) < MIN_POSITIVE else r
    r = 0.0 if abs(numerator) < MIN_POSITIVE else r
    return max(r, minimum_control(d_l, d_r, slope, prefer_shape))


@kernel
def outer_map(x, s, lower):
    """Jäckel's lower map f_l = 2π|x|/√27 · N(-z)³, z = |x|/(√3 s), or upper map
    f_u = N(-s/2), with df/dβ and d²f/dβ². Both share one erfcx and two exps."""
    ax = abs(x)
    s2 = s * s
    z = ax / (SQRT_THREE * s)
    y = z * z                      # lower map
    w = (x / s) * (x / s)          # upper map
    a = z * INV_SQRT2 if lower else 0.5 * s * INV_SQRT2
    erfcx_a = erfcx(a)
    gauss = exp(-a * a)            # exp(-y/2) or exp(-s²/8)
    cdf = 0.5 * erfcx_a * gauss    # N(-z) or N(-s/2)
    growth = exp((y if lower else w) + 0.125 * s2)
    f_lower = TWO_PI_OVER_SQRT_27 * ax * (cdf * cdf * cdf)
    fp_lower = TWO_PI * y * cdf * cdf * growth
    fpp_lower = (PI_OVER_SIX * y / (s2 * s) * cdf
                 * (8.0 * SQRT_THREE * s * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * SQRT_PI_OVER_TWO * erfcx_a)
                 * growth * growth)
    fp_upper = -0.5 * np.sqrt(growth * gauss)   # -exp(w/2)/2
    fpp_upper = SQRT_PI_OVER_TWO * growth * w / s
    return ((f_lower if lower else cdf),
            (fp_lower if lower else fp_upper),
            (fpp_lower if lower else fpp_upper))


@kernel
def householder_step(s, beta, x, b_max, log_target, use_log, use_gap):
    """One third-order Householder step on the segment's objective (Jäckel, section 5):
    b - beta in the middle, 1/ln b - 1/ln beta lowest, ln(b_max - b) - ln(b_max - beta) highest.
    `log_target` is ln beta or ln(b_max - beta), whichever the objective needs."""
    b, gap, ln_b, vega, vega_over_b = normalised_black(x, s, b_max)
    h = x / s
    b_halley = h * h / s - 0.25 * s
    b_hh3 = b_halley * b_halley - 3.0 * (h / s) * (h / s) - 0.25

    newton_plain = (beta - b) / vega

    inv_ln_b = 1.0 / ln_b
    newton_log = (log_target - ln_b) * ln_b / (log_target * vega_over_b)
    halley_log = b_halley - vega_over_b * (1.0 + 2.0 * inv_ln_b)
    hh3_log = (b_hh3 + 2.0 * vega_over_b * vega_over_b * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
               - 3.0 * b_halley * vega_over_b * (1.0 + 2.0 * inv_ln_b))

    gap_slope = vega / gap
    newton_gap = (log(gap) - log_target) / gap_slope
    halley_gap = b_halley + gap_slope
    hh3_gap = b_hh3 + gap_slope * (2.0 * gap_slope + 3.0 * b_halley)

    newton = newton_log if use_log else (newton_gap if use_gap else newton_plain)
    halley = halley_log if use_log else (halley_gap if use_gap else b_halley)
    hh3 = hh3_log if use_log else (hh3_gap if use_gap else b_hh3)
    step = newton * householder_factor(newton, halley, hh3)
    return s + max(-0.5 * s, step)


@kernel
def normalised_volatility(beta, x, b_max):
    """s = sigma*sqrt(t) with b(x, s) = beta for the OTM call, x <= 0, 0 < beta < b_max."""
    # Segment boundaries: the inflection point s_c and the tangents' zero crossings.
    s_c = np.sqrt(-2.0 * x)
    b_c, _, _, v_c, _ = normalised_black(x, s_c, b_max)
    s_l = s_c - b_c / v_c
    s_h = s_c + (b_max - b_c) / v_c
    s_h = s_h if v_c > MIN_POSITIVE else s_c
    b_l, _, _, v_l, _ = normalised_black(x, s_l, b_max)
    b_h, _, _, v_h, _ = normalised_black(x, s_h, b_max)
    lowest = beta < b_l
    highest = beta > b_h
    below_centre = beta < b_c

    # One rational cubic per option, on the segment beta falls in: through the
    # lower map on [0, b_l], s itself on [b_l, b_c] and [b_c, b_h], the upper map on [b_h, b_max].
    f_o, fp_o, fpp_o = outer_map(x, s_l if lowest else s_h, lowest)
    x_l = 0.0 if lowest else (b_l if below_centre else (b_c if not highest else b_h))
    x_r = b_l if lowest else (b_c if below_centre else (b_h if not highest else b_max))
    y_l = 0.0 if lowest else (s_l if below_centre else (s_c if not highest else f_o))
    y_r = f_o if lowest else (s_c if below_centre else (s_h if not highest else 0.0))
    d_l = 1.0 if lowest else (1.0 / v_l if below_centre else (1.0 / v_c if not highest else fp_o))
    d_r = fp_o if lowest else (1.0 / v_c if below_centre else (1.0 / v_h if not highest else -0.5))
    outer = lowest | highest
    second = fpp_o if outer else 0.0
    r = curvature_control(x_l, x_r, y_l, y_r, d_l, d_r, second, below_centre, outer)
    value = rational_cubic(beta, x_l, x_r, y_l, y_r, d_l, d_r, r)

    # Round-off fallbacks of the outer segments: quadratics with the same end values.
    ratio = beta / b_l
    lowest_fallback = (f_o * ratio + b_l * (1.0 - ratio)) * ratio
    width = b_max - b_h
    ratio = (beta - b_h) / width
    highest_fallback = (f_o * (1.0 - ratio) + 0.5 * width * ratio) * (1.0 - ratio)
    usable = (value > 0.0) & ((abs(fpp_o) < SQRT_DBL_MAX) | lowest)
    value = value if (usable | (not outer)) else (lowest_fallback if lowest else highest_fallback)

    # Invert the map: f_l -> N(-z) = (f / (2π|x|/√27))^(1/3), f_u = N(-s/2); one log serves both.
    log_p = log(value / (TWO_PI_OVER_SQRT_27 * abs(x)) if lowest else value) * (1.0 / 3.0 if lowest else 1.0)
    p = exp(log_p) if lowest else value
    z = inverse_norm_cdf_lower(p, log_p)
    s_outer = abs(x / (SQRT_THREE * z)) if lowest else -2.0 * z
    s = s_outer if outer else value

    # Each segment's objective is nearly linear in s there: 1/ln b lowest, ln(b_max - b) highest.
    use_log = lowest
    use_gap = highest & (beta > 0.5 * b_max)
    log_target = log(b_max - beta if use_gap else beta)
    # Written out rather than looped: a constant inner loop would keep LLVM from vectorising the book loop.
    s = householder_step(s, beta, x, b_max, log_target, use_log, use_gap)
    s = householder_step(s, beta, x, b_max, log_target, use_log, use_gap)
    return s


@kernel
def implied_volatility_of(price, spot, strike, t, sign, sqrt_t, df_rate, log_moneyness, forward_over_strike):
    """sigma reproducing `price`, or NaN where none does (see app.greeks.implied_volatility)."""
    root = np.sqrt(forward_over_strike)            # e^(x/2)
    beta = price / (df_rate * strike * root)         # price / (e^-rt * sqrt(F K))
    in_the_money = sign * log_moneyness > 0.0
    intrinsic = sign * (root - 1.0 / root)
    time_value = beta - intrinsic if in_the_money else beta
    x = -abs(log_moneyness)                         # an ITM call's time value is the OTM put's price, and vice versa
    b_max = root if log_moneyness < 0.0 else 1.0 / root   # e^(x/2)
    rounding = MIN_TIME_VALUE_EPSILONS * EPSILON * (beta + root + 1.0 / root) if in_the_money else 0.0
    solvable = ((t > 0.0) & (spot > 0.0) & (strike > 0.0) & (price > 0.0)
                & (time_value > rounding) & (time_value < b_max))
    s = normalised_volatility(time_value, x, b_max)
    sigma = s / sqrt_t
    return sigma if (solvable & (sigma == sigma) & (sigma < math.inf)) else math.nan
