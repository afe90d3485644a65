// Per-pixel colour-space conversions of selective search (Uijlings et al., IJCV 2013, §3.2),
// from 8-bit RGB to channels on the [0, 1] scale. Written once, used by every loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace pydetect {

enum class ColorSpace : int { HSV = 0, Lab = 1, rgI = 2, H = 3, I = 4 };

HOST_DEVICE int color_space_channels(ColorSpace cs) {
  return (cs == ColorSpace::H || cs == ColorSpace::I) ? 1 : 3;
}

// HSV with hue / 360, saturation and value in [0, 1] (skimage.color.rgb2hsv).
HOST_DEVICE void rgb_to_hsv(float r, float g, float b, float* hsv) {
  const float mx = std::max(r, std::max(g, b)), mn = std::min(r, std::min(g, b));
  const float delta = mx - mn;
  float h = 0.f;
  if (delta > 0.f) {
    if (mx == r) h = (g - b) / delta;
    else if (mx == g) h = 2.f + (b - r) / delta;
    else h = 4.f + (r - g) / delta;
    h /= 6.f;
    if (h < 0.f) h += 1.f;
  }
  hsv[0] = h;
  hsv[1] = mx > 0.f ? delta / mx : 0.f;
  hsv[2] = mx;
}

HOST_DEVICE float srgb_to_linear(float c) {
  return c > 0.04045f ? std::pow((c + 0.055f) / 1.055f, 2.4f) : c / 12.92f;
}

HOST_DEVICE float lab_f(float t) {
  return t > 0.008856f ? std::cbrt(t) : 7.787f * t + 16.f / 116.f;
}

// CIE L*a*b* (D65), as skimage.color.rgb2lab, then L / 100 and (a + 128) / 255,
// (b + 128) / 255 so that every channel lies on the [0, 1] scale.
HOST_DEVICE void linear_rgb_to_lab01(float r, float g, float b, float* lab) {
  const float x = (0.412453f * r + 0.357580f * g + 0.180423f * b) / 0.95047f;
  const float y = (0.212671f * r + 0.715160f * g + 0.072169f * b);
  const float z = (0.019334f * r + 0.119193f * g + 0.950227f * b) / 1.08883f;
  const float fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
  const float L = y > 0.008856f ? 116.f * fy - 16.f : 903.3f * y;
  lab[0] = L / 100.f;
  lab[1] = (500.f * (fx - fy) + 128.f) / 255.f;
  lab[2] = (200.f * (fy - fz) + 128.f) / 255.f;
}

HOST_DEVICE void rgb_to_lab01(float r, float g, float b, float* lab) {
  linear_rgb_to_lab01(srgb_to_linear(r), srgb_to_linear(g), srgb_to_linear(b), lab);
}

// Converts one 8-bit RGB pixel; writes color_space_channels(cs) values clamped to [0, 1].
HOST_DEVICE void convert_pixel(const uint8_t* rgb, ColorSpace cs, float* out) {
  const float r = rgb[0] / 255.f, g = rgb[1] / 255.f, b = rgb[2] / 255.f;
  float v[3];
  int n = 3;
  switch (cs) {
    case ColorSpace::HSV: rgb_to_hsv(r, g, b, v); break;
    case ColorSpace::Lab: rgb_to_lab01(r, g, b, v); break;
    case ColorSpace::rgI: {
      const float s = r + g + b;
      v[0] = s > 0.f ? r / s : 1.f / 3.f;
      v[1] = s > 0.f ? g / s : 1.f / 3.f;
      v[2] = s / 3.f;
      break;
    }
    case ColorSpace::H: rgb_to_hsv(r, g, b, v); n = 1; break;
    case ColorSpace::I: v[0] = (r + g + b) / 3.f; n = 1; break;
  }
  for (int i = 0; i < n; ++i) out[i] = std::min(1.f, std::max(0.f, v[i]));
}

}  // namespace pydetect
