import Foundation

/// What a decoder needs to turn a device's packets into pictures. Raw frames use `name == "rawvideo"`.
public struct CodecDescription: Equatable, Sendable {
  public var name: String
  public var width: Int
  public var height: Int
  public var pixelFormat: String
  public var extradata: Data
  public var timeBase: Rational
  /// Nominal frames per second, 0 when unknown.
  public var frameRate: Double
  /// Raw pictures only: bytes from one row to the next, 0 when rows are packed.
  public var stride: Int

  public init(
    name: String, width: Int, height: Int, pixelFormat: String, extradata: Data = Data(),
    timeBase: Rational, frameRate: Double = 0, stride: Int = 0
  ) {
    self.name = name
    self.width = width
    self.height = height
    self.pixelFormat = pixelFormat
    self.extradata = extradata
    self.timeBase = timeBase
    self.frameRate = frameRate
    self.stride = stride
  }

  public static let rawVideo = "rawvideo"
  /// Nominal rates past this are no camera's; a description arriving with one (or nan, or infinity) has
  /// an unknown rate. Readers turn rates into whole numbers, which such values would crash.
  public static let largestFrameRate: Double = 1000
  public var isRaw: Bool { name == Self.rawVideo }
}

public struct Rational: Hashable, Sendable, CustomStringConvertible {
  public var numerator: Int32
  public var denominator: Int32

  public init(_ numerator: Int32, _ denominator: Int32) {
    self.numerator = numerator
    self.denominator = denominator
  }

  public var isValid: Bool { numerator > 0 && denominator > 0 }
  public var doubleValue: Double { isValid ? Double(numerator) / Double(denominator) : 0 }
  public var description: String { "\(numerator)/\(denominator)" }
}
