#include <math.h>
#include <stdio.h>
static double maxerr(double a, double b) {
  double w = 0;
  for (double x = -10; x <= 10; x += 1e-3) {
    double phi = 0.5 * (1 + erf(x / sqrt(2.0)));
    double ph = 0.5 * (1 + tanh(x * (a + b * x * x)));
    double e = fabs(ph - phi);
    if (e > w) w = e;
  }
  return w;
}
int main() {
  double a0 = sqrt(2 / M_PI), b0 = 0.044715 * sqrt(2 / M_PI);
  printf("standard a %.8f b %.8f max |Phi err| %.3e\n", a0, b0, maxerr(a0, b0));
  double best = 1, ba = 0, bb = 0;
  for (double a = a0 - 0.01; a <= a0 + 0.01; a += 0.0002)
    for (double b = b0 - 0.005; b <= b0 + 0.005; b += 0.0001) {
      double e = maxerr(a, b);
      if (e < best) { best = e; ba = a; bb = b; }
    }
  printf("fitted a %.8f b %.8f max |Phi err| %.3e\n", ba, bb, best);
}
