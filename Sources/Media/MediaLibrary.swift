import CFFmpeg

/// One-time FFmpeg set-up: network protocols for RTSP, quieter logs. Device inputs (v4l2, lavfi) are
/// MediaDevices' own, for the capturing side.
public enum MediaLibrary {
  private static let setUpOnce: Void = {
    avformat_network_init()
    av_log_set_level(AV_LOG_ERROR)
  }()

  public static func setUp() { _ = setUpOnce }

  /// FFmpeg's long name of a codec ("H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10"), or "" if unknown.
  public static func codecLongName(_ name: String) -> String {
    guard let descriptor = avcodec_descriptor_get_by_name(name), let long = descriptor.pointee.long_name else {
      return ""
    }
    return String(cString: long)
  }
}
