#ifndef FRAMERELAY_CFFMPEGDEVICES_SHIM_H
#define FRAMERELAY_CFFMPEGDEVICES_SHIM_H

#include <libavdevice/avdevice.h>

#endif
