#ifndef FRAMERELAY_CV4L2_SHIM_H
#define FRAMERELAY_CV4L2_SHIM_H

#include <linux/videodev2.h>
#include <sys/ioctl.h>

// ioctl is variadic and the request codes are macros: neither imports into Swift.
static inline int cv4l2_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
static inline unsigned long cv4l2_querycap(void) { return VIDIOC_QUERYCAP; }
static inline unsigned long cv4l2_enum_fmt(void) { return VIDIOC_ENUM_FMT; }
static inline unsigned long cv4l2_enum_framesizes(void) { return VIDIOC_ENUM_FRAMESIZES; }
static inline unsigned long cv4l2_enum_frameintervals(void) { return VIDIOC_ENUM_FRAMEINTERVALS; }

// Union members of the frame size and interval enumerations.
static inline struct v4l2_frmsize_discrete cv4l2_size_discrete(const struct v4l2_frmsizeenum *e) { return e->discrete; }
static inline struct v4l2_frmsize_stepwise cv4l2_size_stepwise(const struct v4l2_frmsizeenum *e) { return e->stepwise; }
static inline struct v4l2_fract cv4l2_interval_discrete(const struct v4l2_frmivalenum *e) { return e->discrete; }
static inline struct v4l2_fract cv4l2_interval_min(const struct v4l2_frmivalenum *e) { return e->stepwise.min; }
static inline struct v4l2_fract cv4l2_interval_max(const struct v4l2_frmivalenum *e) { return e->stepwise.max; }

#endif
