// Per-vote math of the Implicit Shape Model, written once and shared by every loop.
//
// A vote is a point (x, y, s) of the continuous Hough space: the object centre (x, y)
// and the object scale s > 0 a matched feature predicts. The mean-shift window around
// an estimate m = (mx, my, ms) is an ellipsoid. With the scale-adaptive ("balloon")
// kernel of Leibe, Leonardis & Schiele (IJCV 2008, sec. 5.1) its half-widths grow with
// the scale of the estimate m itself:
//     hxy = bandwidth_xy * ms,   hs = bandwidth_scale * ms,
// and without adaptation they are constant (bandwidth_xy, bandwidth_scale), which for
// equal bandwidths is the Euclidean ball of scikit-learn's flat-kernel MeanShift.
#pragma once

#include "common/host_device.h"

namespace pydetect {
namespace ism {

struct Window {
  double inv_hxy;  // 1 / spatial half-width
  double inv_hs;   // 1 / scale half-width
};

HOST_DEVICE Window window_at(double ms, double bandwidth_xy, double bandwidth_scale, bool adaptive) {
  const double f = adaptive ? ms : 1.0;
  return Window{1.0 / (bandwidth_xy * f), 1.0 / (bandwidth_scale * f)};
}

// Squared normalised distance of vote (x, y, s) to the window centre m; <= 1 is inside.
HOST_DEVICE double window_distance2(const Window& w, double mx, double my, double ms,
                                    double x, double y, double s) {
  const double dx = (x - mx) * w.inv_hxy, dy = (y - my) * w.inv_hxy, ds = (s - ms) * w.inv_hs;
  return dx * dx + dy * dy + ds * ds;
}

// Kernel profile at squared normalised distance d2 (<= 1): 0 = flat (uniform ball),
// 1 = Epanechnikov (1 - d2). The weighted mean under the flat kernel is the mean-shift
// step of the Epanechnikov density; scores are the flat kernel's vote mass.
HOST_DEVICE double kernel_profile(int kernel, double d2) {
  return kernel == 0 ? 1.0 : (1.0 - d2);
}

// Vote cast by a feature at (fx, fy) with scale fs through an occurrence that stores the
// offset (ox, oy) to the object centre and the object scale os, all in units of the
// feature scale at training time: centre = f + fs * o, object scale = fs * os.
HOST_DEVICE void cast_vote(double fx, double fy, double fs, double ox, double oy, double os,
                           double* vx, double* vy, double* vs) {
  *vx = fx + fs * ox;
  *vy = fy + fs * oy;
  *vs = fs * os;
}

}  // namespace ism
}  // namespace pydetect
