#ifndef FRAMERELAY_CFFMPEG_SHIM_H
#define FRAMERELAY_CFFMPEG_SHIM_H

#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <errno.h>

// Macros Swift cannot import.
static inline int cff_averror(int e) { return AVERROR(e); }
static inline int cff_averror_eof(void) { return AVERROR_EOF; }
static inline int64_t cff_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline int cff_pkt_flag_key(void) { return AV_PKT_FLAG_KEY; }
static inline int cff_pkt_flag_corrupt(void) { return AV_PKT_FLAG_CORRUPT; }
static inline int cff_frame_flag_corrupt(void) { return AV_FRAME_FLAG_CORRUPT; }
static inline int cff_codec_flag_global_header(void) { return AV_CODEC_FLAG_GLOBAL_HEADER; }
static inline int cff_codec_flag_low_delay(void) { return AV_CODEC_FLAG_LOW_DELAY; }
static inline int cff_fmt_globalheader(void) { return AVFMT_GLOBALHEADER; }

// AVFrame.data / linesize import as 8-tuples; sws_scale wants plain pointers.
static inline const uint8_t *const *cff_frame_data(const AVFrame *f) { return (const uint8_t *const *)f->data; }
static inline const int *cff_frame_linesize(const AVFrame *f) { return f->linesize; }
static inline uint8_t **cff_frame_data_mut(AVFrame *f) { return f->data; }
static inline int *cff_frame_linesize_mut(AVFrame *f) { return f->linesize; }

#endif
