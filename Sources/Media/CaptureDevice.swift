import CV4L2
import Foundation

/// A V4L2 capture device as its driver describes it: what `relay-client devices` lists.
public struct CaptureDevice: Sendable {
  public struct Format: Sendable {
    /// The four-character code, e.g. "YUYV", "MJPG", "H264".
    public var fourcc: String
    public var description: String
    public var sizes: [Size]
  }

  public struct Size: Sendable {
    public var width: Int
    public var height: Int
    /// Frames per second the device offers at this size (discrete, or the range's ends).
    public var frameRates: [Double]
  }

  public var path: String
  public var driver: String
  public var card: String
  public var formats: [Format]

  /// Asks the device at `path` for its capabilities, formats, sizes and frame rates.
  public static func describe(path: String) throws(MediaError) -> CaptureDevice {
    let fd = open(path, O_RDWR | O_NONBLOCK)
    guard fd >= 0 else { throw MediaError(operation: "open \(path)", message: String(cString: strerror(errno))) }
    defer { close(fd) }
    var capability = v4l2_capability()
    guard cv4l2_ioctl(fd, cv4l2_querycap(), &capability) == 0 else {
      throw MediaError(operation: "query \(path)", message: "not a V4L2 device (\(String(cString: strerror(errno))))")
    }
    let capabilities = capability.device_caps != 0 ? capability.device_caps : capability.capabilities
    guard capabilities & UInt32(V4L2_CAP_VIDEO_CAPTURE) != 0 else {
      throw MediaError(operation: "query \(path)", message: "not a video capture device")
    }
    return CaptureDevice(
      path: path, driver: text(capability.driver), card: text(capability.card), formats: formats(fd))
  }

  private static func formats(_ fd: Int32) -> [Format] {
    var formats: [Format] = []
    var index: UInt32 = 0
    while true {
      var description = v4l2_fmtdesc()
      description.index = index
      description.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
      guard cv4l2_ioctl(fd, cv4l2_enum_fmt(), &description) == 0 else { break }
      let code = description.pixelformat
      formats.append(Format(fourcc: fourcc(code), description: text(description.description), sizes: sizes(fd, code)))
      index += 1
    }
    return formats
  }

  private static func sizes(_ fd: Int32, _ pixelFormat: UInt32) -> [Size] {
    var sizes: [Size] = []
    var index: UInt32 = 0
    while index < 64 {
      var size = v4l2_frmsizeenum()
      size.index = index
      size.pixel_format = pixelFormat
      guard cv4l2_ioctl(fd, cv4l2_enum_framesizes(), &size) == 0 else { break }
      if size.type == V4L2_FRMSIZE_TYPE_DISCRETE.rawValue {
        let discrete = cv4l2_size_discrete(&size)
        let (w, h) = (Int(discrete.width), Int(discrete.height))
        sizes.append(Size(width: w, height: h, frameRates: frameRates(fd, pixelFormat, w, h)))
      } else {
        // Stepwise or continuous: list the largest size only.
        let range = cv4l2_size_stepwise(&size)
        let (w, h) = (Int(range.max_width), Int(range.max_height))
        sizes.append(Size(width: w, height: h, frameRates: frameRates(fd, pixelFormat, w, h)))
        break
      }
      index += 1
    }
    return sizes
  }

  private static func frameRates(_ fd: Int32, _ pixelFormat: UInt32, _ width: Int, _ height: Int) -> [Double] {
    var rates: [Double] = []
    var index: UInt32 = 0
    while index < 64 {
      var interval = v4l2_frmivalenum()
      interval.index = index
      interval.pixel_format = pixelFormat
      interval.width = UInt32(width)
      interval.height = UInt32(height)
      guard cv4l2_ioctl(fd, cv4l2_enum_frameintervals(), &interval) == 0 else { break }
      if interval.type == V4L2_FRMIVAL_TYPE_DISCRETE.rawValue {
        rates.append(rate(cv4l2_interval_discrete(&interval)))
      } else {
        rates += [rate(cv4l2_interval_max(&interval)), rate(cv4l2_interval_min(&interval))]
        break
      }
      index += 1
    }
    return rates
  }

  private static func rate(_ interval: v4l2_fract) -> Double {
    interval.numerator > 0 ? Double(interval.denominator) / Double(interval.numerator) : 0
  }

  private static func fourcc(_ code: UInt32) -> String {
    String(decoding: (0..<4).map { UInt8(truncatingIfNeeded: code >> ($0 * 8)) }, as: UTF8.self)
      .trimmingCharacters(in: .whitespaces)
  }

  private static func text<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { bytes in String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self) }
  }
}
