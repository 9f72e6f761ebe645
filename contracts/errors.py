"""Typed errors of the contract VM.

`VMError` is what a contract call can end in besides success: `OutOfGas` or a `VMFault` with a
snake_case code. Either way the call leaves no writes behind. `CompileError` is for contract
source that is not in the language; it never happens at run time.
"""


class VMError(Exception):
    """A contract call that did not complete; `gas_used` is what the caller should charge."""

    code = "vm_error"

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message
        self.gas_used = 0
        self.function: str | None = None
        self.line: int | None = None

    def where(self) -> str:
        """'in f at line 12', or '' when the error happened outside contract code."""
        if self.function is None:
            return ""
        return f" (in {self.function} at line {self.line})"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}{self.where()}"


class OutOfGas(VMError):
    """The call needed more gas than its limit; all of the limit is consumed."""

    code = "out_of_gas"


class VMFault(VMError):
    """The contract (or its bytecode) did something the VM refuses: a type error, a limit, a bad host call."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message)
        self.code = code


class CompileError(Exception):
    """Contract source outside the language, with the line it was found on."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.message = message
        self.line = line
