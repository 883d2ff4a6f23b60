// Emulates cutlass_check's packed FFN (int8, f16): GPU path (fma epilogue, fast-erf or erff GELU,
// f16, row quantization) against the CPU reference (three f32 roundings, libm erff GELU, f16,
// quantize_rows), then FFN-out's difference. Usage: emu ROWS SEED FAST(0/1)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
static uint64_t st;
static double urand(void) { st = st * 6364136223846793005ULL + 1442695040888963407ULL; return ((st >> 11) + 0.5) / 9007199254740992.0; }
static float randn(float sd) { double u = urand(), v = urand(); return (float)(sd * sqrt(-2 * log(u)) * cos(2 * M_PI * v)); }
static float h(float x) { return (float)(_Float16)x; }
static float erf_fast(float x) {
  float z = fminf(fmaxf(x, -4.0f), 4.0f), z2 = z * z;
  float p = fmaf(z2, -2.72614225801306e-10f, 2.77068142495902e-08f);
  p = fmaf(z2, p, -2.10102402082508e-06f); p = fmaf(z2, p, -5.69250639462346e-05f);
  p = fmaf(z2, p, -7.34990630326855e-04f); p = fmaf(z2, p, -2.95459980854025e-03f);
  p = fmaf(z2, p, -1.60960333262415e-02f);
  float q = fmaf(z2, -1.45660718464996e-05f, -2.13374055278905e-04f);
  q = fmaf(z2, q, -1.68282697438203e-03f); q = fmaf(z2, q, -7.37332916720468e-03f);
  q = fmaf(z2, q, -1.42647390514189e-02f);
  return (p * z) / q;
}
// weight (n,k) -> int8 codes and channel scales as quantize_rows
static void qrows(const float *x, int rows, int cols, int8_t *q, float *s) {
  for (int r = 0; r < rows; r++) {
    float m = 0; for (int c = 0; c < cols; c++) m = fmaxf(m, fabsf(x[(size_t)r * cols + c]));
    float sc = m == 0 ? 1 : m * (float)(1.0 / 127.0); float inv = 1.0f / sc; s[r] = sc;
    for (int c = 0; c < cols; c++) q[(size_t)r * cols + c] = (int8_t)fminf(fmaxf(roundf(x[(size_t)r * cols + c] * inv), -127), 127);
  }
}
int main(int argc, char **argv) {
  int M = atoi(argv[1]); st = atoll(argv[2]); int fast = atoi(argv[3]);
  const int D = 768, H = 3072;
  float *w1 = malloc(4L * H * D), *w2 = malloc(4L * D * H), *b1 = malloc(4L * H), *b2 = malloc(4L * D), *x = malloc(4L * M * D);
  for (long i = 0; i < (long)H * D; i++) w1[i] = randn(0.05f);
  for (long i = 0; i < (long)D * H; i++) w2[i] = randn(0.05f);
  for (int i = 0; i < H; i++) b1[i] = h(randn(0.1f));
  for (int i = 0; i < D; i++) b2[i] = h(randn(0.1f));
  for (long i = 0; i < (long)M * D; i++) x[i] = h(randn(1.0f));
  int8_t *q1 = malloc((long)H * D), *q2 = malloc((long)D * H), *qx = malloc((long)M * D);
  float *s1 = malloc(4L * H), *s2 = malloc(4L * D), *sx = malloc(4L * M);
  qrows(w1, H, D, q1, s1); qrows(w2, D, H, q2, s2); qrows(x, M, D, qx, sx);
  float *yg = malloc(4L * H), *yc = malloc(4L * H); int8_t *cg = malloc(H), *cc = malloc(H);
  float *wf = malloc(4L * D * H); for (long i = 0; i < (long)D * H; i++) wf[i] = q2[i];
  double worst = 0, outmax = 0; long ydiff = 0, cdiff = 0, maxdiff_rows = 0;
  for (int m = 0; m < M; m++) {
    for (int n = 0; n < H; n++) {
      int acc = 0; for (int k = 0; k < D; k++) acc += qx[(long)m * D + k] * q1[(long)n * D + k];
      float a = (float)acc;
      float pg = fmaf(s1[n], a * sx[m], b1[n]);
      float gg = fast ? fmaf(0.5f * pg, erf_fast(pg * 0.70710678118654752f), 0.5f * pg)
                      : fmaf(0.5f * pg, erff(pg * 0.70710678118654752f), 0.5f * pg);
      float pc = ((a * sx[m]) * s1[n]) + b1[n];
      float gc = (erff(pc * (float)M_SQRT1_2) + 1.f) * 0.5f * pc;
      yg[n] = h(gg); yc[n] = h(gc); ydiff += yg[n] != yc[n];
    }
    float sg, sc; qrows(yg, 1, H, cg, &sg); qrows(yc, 1, H, cc, &sc);
    maxdiff_rows += sg != sc;
    for (int n = 0; n < H; n++) cdiff += cg[n] != cc[n];
    for (int o = 0; o < D; o++) {
      float ac = 0, d = 0; const float *wr = wf + (long)o * H;
      for (int k = 0; k < H; k++) { ac += cc[k] * wr[k]; d += (cg[k] * sg - cc[k] * sc) * wr[k]; }
      double out = (double)ac * sc * s2[o] + b2[o];
      double err = fabs((double)d * s2[o]);
      if (fabs(out) > outmax) outmax = fabs(out);
      if (err > worst) worst = err;
    }
  }
  printf("rows %d seed %s fast %d: f16 GELU values differing %.3e, rows whose scale differs %ld, codes differing %.3e, max |err| %.4f / max |out| %.3f = %.2e\n",
         M, argv[2], fast, (double)ydiff / ((double)M * H), maxdiff_rows, (double)cdiff / ((double)M * H), worst, outmax, worst / outmax);
}
