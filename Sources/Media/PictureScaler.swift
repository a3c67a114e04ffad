import CFFmpeg

/// Converts pictures to one size and pixel format into a frame it owns (e.g. a camera's YUYV to the
/// yuv420p an H.264 encoder takes). One thread at a time.
public final class PictureScaler {
  public let width: Int
  public let height: Int
  public let pixelFormat: String
  private let format: AVPixelFormat
  private var scaler: OpaquePointer?
  private var key: (width: Int32, height: Int32, format: Int32) = (0, 0, -1)
  private var frame: UnsafeMutablePointer<AVFrame>?

  public init(width: Int, height: Int, pixelFormat: String) throws(MediaError) {
    self.width = width
    self.height = height
    self.pixelFormat = pixelFormat
    format = av_get_pix_fmt(pixelFormat)
    guard format != AV_PIX_FMT_NONE else {
      throw MediaError(operation: "scale", message: "unknown pixel format \(pixelFormat)")
    }
    frame = av_frame_alloc()
    frame!.pointee.width = Int32(width)
    frame!.pointee.height = Int32(height)
    frame!.pointee.format = format.rawValue
    try check(av_frame_get_buffer(frame, 0), "allocate a \(width)x\(height) \(pixelFormat) frame")
  }

  deinit {
    sws_freeContext(scaler)
    av_frame_free(&frame)
  }

  /// Hands `body` the picture converted; the result is valid only during the call.
  public func scale<T>(_ picture: DecodedPicture, _ body: (DecodedPicture) throws -> T) throws -> T {
    let source = picture.frame
    let sourceKey = (source.pointee.width, source.pointee.height, source.pointee.format)
    if scaler == nil || key != sourceKey {
      sws_freeContext(scaler)
      scaler = sws_getContext(
        sourceKey.0, sourceKey.1, AVPixelFormat(rawValue: sourceKey.2), Int32(width), Int32(height), format,
        Int32(SWS_BICUBIC), nil, nil, nil)
      key = sourceKey
    }
    guard let scaler else {
      throw MediaError(operation: "scale", message: "no scaler from format \(sourceKey.2) to \(pixelFormat)")
    }
    // An encoder may still hold the previous picture's buffers.
    try check(av_frame_make_writable(frame), "make frame writable")
    sws_scale(
      scaler, cff_frame_data(source), cff_frame_linesize(source), 0, sourceKey.1, cff_frame_data_mut(frame),
      cff_frame_linesize_mut(frame))
    frame!.pointee.pts = source.pointee.pts
    return try body(DecodedPicture(frame: frame!))
  }
}
