// Exhaustive check of the lean GELU against the exact erf GELU (double), all f32 x in [-LIM, LIM].
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
static const double A[7] = {-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
  -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10};
static const double B[5] = {-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
  -2.13374055278905e-04, -1.45660718464996e-05};
static float a[7], b[5];
static float old_gelu(float x) {
  float z = fminf(fmaxf(x * 0.70710678118654752f, -4.0f), 4.0f);
  float z2 = z * z;
  float p = fmaf(z2, (float)A[6], (float)A[5]);
  p = fmaf(z2, p, (float)A[4]); p = fmaf(z2, p, (float)A[3]); p = fmaf(z2, p, (float)A[2]);
  p = fmaf(z2, p, (float)A[1]); p = fmaf(z2, p, (float)A[0]);
  float q = fmaf(z2, (float)B[4], (float)B[3]);
  q = fmaf(z2, q, (float)B[2]); q = fmaf(z2, q, (float)B[1]); q = fmaf(z2, q, (float)B[0]);
  float e = (p * z) * (1.0f / q);
  float h = 0.5f * x;
  return fmaf(h, e, h);
}
static float lean_gelu(float x, int rcp_dir) {
  float t = fminf(fmaxf(x, -5.65685424949238f), 5.65685424949238f);
  float s = t * t;
  float p = fmaf(s, a[6], a[5]);
  p = fmaf(s, p, a[4]); p = fmaf(s, p, a[3]); p = fmaf(s, p, a[2]); p = fmaf(s, p, a[1]); p = fmaf(s, p, a[0]);
  float q = fmaf(s, b[4], b[3]);
  q = fmaf(s, q, b[2]); q = fmaf(s, q, b[1]); q = fmaf(s, q, b[0]);
  float r = 1.0f / q;  // rcp.approx.ftz: within 1 ulp; try r and its neighbours
  if (rcp_dir > 0) r = nextafterf(r, INFINITY); else if (rcp_dir < 0) r = nextafterf(r, -INFINITY);
  float phi = fmaf(p * t, r, 0.5f);
  return x * phi;
}
int main(int argc, char **argv) {
  for (int i = 0; i < 7; i++) a[i] = (float)(A[i] * (0.5 / sqrt(2.0)) * pow(0.5, i));
  for (int i = 0; i < 5; i++) b[i] = (float)(B[i] * pow(0.5, i));
  for (int i = 0; i < 7; i++) printf("a%d %.9e\n", i, a[i]);
  for (int i = 0; i < 5; i++) printf("b%d %.9e\n", i, b[i]);
  float lim = 64.0f;
  double worst_old = 0, worst_lean = 0, xo = 0, xl = 0;  // max |err| / max(|x|, 2^-20)
  double worst_rel_pos_lean = 0, worst_rel_pos_old = 0;  // x >= 0: |err| / y
  uint32_t step = argc > 1 ? (uint32_t)strtoul(argv[1], 0, 10) : 1;
  for (uint32_t u = 0; u < 0x7f800000u; u += step) {
    float xp; memcpy(&xp, &u, 4);
    if (xp > lim) break;
    for (int sg = 0; sg < 2; sg++) {
      float x = sg ? -xp : xp;
      double exact = 0.5 * (double)x * (1.0 + erf((double)x / sqrt(2.0)));
      double den = fmax(fabs((double)x), 1e-30);
      double eo = fabs(old_gelu(x) - exact) / den;
      if (eo > worst_old) { worst_old = eo; xo = x; }
      for (int d = -1; d <= 1; d++) {
        double el = fabs(lean_gelu(x, d) - exact) / den;
        if (el > worst_lean) { worst_lean = el; xl = x; }
        if (x > 0) { double r = fabs(lean_gelu(x, d) - exact) / exact; if (r > worst_rel_pos_lean) worst_rel_pos_lean = r; }
      }
      if (x > 0) { double r = fabs(old_gelu(x) - exact) / exact; if (r > worst_rel_pos_old) worst_rel_pos_old = r; }
    }
  }
  printf("old : max |err|/|x| %.3e at x=%.6g; x>0 max rel %.3e\n", worst_old, xo, worst_rel_pos_old);
  printf("lean: max |err|/|x| %.3e at x=%.6g; x>0 max rel %.3e (rcp within 1 ulp)\n", worst_lean, xl, worst_rel_pos_lean);
  return 0;
}
