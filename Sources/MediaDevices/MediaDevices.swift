import CFFmpegDevices
import Media

/// FFmpeg's device inputs, `v4l2` (cameras) and `lavfi` (filter graphs such as the test pattern), for
/// `MediaInput(format:)`: registered once, by the capturing side only (see CFFmpegDevices).
public enum MediaDevices {
  private static let registerOnce: Void = {
    MediaLibrary.setUp()
    avdevice_register_all()
  }()

  public static func register() { _ = registerOnce }
}
