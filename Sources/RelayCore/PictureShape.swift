/// The shape of raw frames that carry no header of their own (the minimal protocol's): rows × columns
/// (× channels) as numpy writes it, "480x640" or "480x640x3", and the pixel format the bytes are in.
public struct PictureShape: Equatable, Sendable, CustomStringConvertible {
  public enum PixelFormat: String, CaseIterable, Sendable {
    case gray, bgr24, rgb24

    public var channels: Int { self == .gray ? 1 : 3 }
  }

  public var height: Int
  public var width: Int
  public var pixelFormat: PixelFormat

  public init(height: Int, width: Int, pixelFormat: PixelFormat) {
    self.height = height
    self.width = width
    self.pixelFormat = pixelFormat
  }

  /// Parses "HxW" (one channel) or "HxWx3"; the pixel format defaults to gray for one channel and
  /// bgr24 (what OpenCV gives) for three. Returns a sentence saying what is wrong otherwise.
  public static func parse(_ shape: String, pixelFormat: String?) -> Result<PictureShape, ShapeProblem> {
    let parts = shape.lowercased().split(separator: "x").map { Int($0) }
    guard (2...3).contains(parts.count), let height = parts[0], let width = parts[1],
      (1...16384).contains(height), (1...16384).contains(width)
    else {
      return .failure(.init(description: "shape \(shape) is not HxW or HxWx3 (rows x columns [x 3], e.g. 480x640 or 480x640x3)"))
    }
    let channels = parts.count == 3 ? parts[2] : 1
    guard channels == 1 || channels == 3 else {
      return .failure(.init(description: "shape \(shape) has \(channels.map(String.init) ?? "?") channels; use 1 (HxW) or 3 (HxWx3)"))
    }
    let format: PixelFormat
    if let pixelFormat {
      guard let given = PixelFormat(rawValue: pixelFormat) else {
        return .failure(.init(description: "pixel format \(pixelFormat) is not gray, bgr24 or rgb24"))
      }
      format = given
    } else {
      format = channels == 1 ? .gray : .bgr24
    }
    guard format.channels == channels else {
      return .failure(
        .init(description: "pixel format \(format.rawValue) has \(format.channels) channel(s) but shape \(shape) has \(channels!)"))
    }
    return .success(PictureShape(height: height, width: width, pixelFormat: format))
  }

  /// Bytes of one frame.
  public var frameBytes: Int { height * width * pixelFormat.channels }

  public var description: String {
    pixelFormat.channels == 1 ? "\(height)x\(width) \(pixelFormat.rawValue)" : "\(height)x\(width)x3 \(pixelFormat.rawValue)"
  }

  public struct ShapeProblem: Error, CustomStringConvertible {
    public let description: String
  }
}
