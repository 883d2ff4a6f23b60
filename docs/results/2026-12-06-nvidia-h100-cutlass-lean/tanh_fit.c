// GeluTanhFit (gelu_lean.cuh) against the double erf GELU, every f32 x in [-64, 64] at a stride of
// 64 ulps, with tanh exact (tanhf of the f32 argument, then rounded) and perturbed by tanh.approx's
// relative error bound 2^-11 either way: max |y - GELU(x)| / |x|.
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
int main(void) {
  double worst = 0, wx = 0;
  for (uint32_t u = 0; u < 0x7f800000u; u += 64) {
    float xp; memcpy(&xp, &u, 4);
    if (xp > 64.0f) break;
    for (int sg = 0; sg < 2; sg++) {
      float x = sg ? -xp : xp;
      double exact = 0.5 * (double)x * (1.0 + erf((double)x / sqrt(2.0)));
      float v = x * fmaf(x * x, 0.03537741f, 0.79868456f);
      for (int d = -1; d <= 1; d++) {
        float t = (float)(tanh((double)v) * (1.0 + d * ldexp(1.0, -11)));
        float y = x * fmaf(0.5f, t, 0.5f);
        double e = fabs((double)y - exact) / fmax(fabs((double)x), 1e-30);
        if (e > worst) { worst = e; wx = x; }
      }
    }
  }
  printf("GeluTanhFit: max |y - GELU(x)| / |x| = %.3e at x = %.6g (tanh.approx error 2^-11 included)\n", worst, wx);
  return 0;
}
