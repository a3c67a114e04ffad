import RelayCore
import Testing

@Suite struct DeviceIDTests {
  @Test(arguments: ["cam1", "a", "Front-Door_2.main", String(repeating: "x", count: 64)])
  func acceptsValidIDs(_ value: String) throws {
    #expect(try DeviceID(validating: value).rawValue == value)
  }

  @Test func rejectsEmpty() {
    #expect(throws: DeviceIDError.empty) { try DeviceID(validating: "") }
  }

  @Test func rejectsTooLong() {
    #expect(throws: DeviceIDError.tooLong(65)) { try DeviceID(validating: String(repeating: "x", count: 65)) }
  }

  @Test(arguments: ["bad id", "cam/1", "caméra", "a\u{0}b"])
  func rejectsCharactersOutsideTheSet(_ value: String) {
    #expect(throws: DeviceIDError.self) { try DeviceID(validating: value) }
  }

  @Test(arguments: [".hidden", "-x", "_y", "../x"])
  func rejectsBadFirstCharacter(_ value: String) {
    #expect(throws: DeviceIDError.badFirstCharacter(value)) { try DeviceID(validating: value) }
  }

  @Test func errorMessageStatesTheRule() {
    let message = DeviceIDError.empty.description
    #expect(message.contains("1-64 characters"))
  }
}
