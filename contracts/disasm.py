"""Human-readable listing of bytecode, for debugging contracts and reviewing upgrades."""
from contracts.bytecode import code_hash, load_program
from contracts.opcodes import BYTECODE_VERSION, JUMPS, SPECS, Op


def _operand(program, fn, op: Op, arg: int) -> str:
    if op == Op.CONST:
        return f"{arg} ({program.consts[arg]!r})"
    if op in (Op.LOAD, Op.STORE):
        return f"{arg} ({fn.local_names[arg]})"
    if op == Op.CALL:
        return f"{arg} ({program.functions[arg].name})"
    if op in JUMPS:
        return f"-> {arg}"
    return str(arg)


def disassemble(code: bytes) -> str:
    """One line per instruction, grouped by function, with source lines and fixed gas costs."""
    program = load_program(code)
    out = [f"bytecode v{BYTECODE_VERSION}  code_hash {code_hash(code).hex()}  "
           f"{len(program.functions)} functions, {len(program.consts)} constants"]
    for fn in program.functions:
        params = ", ".join(fn.local_names[:fn.nparams])
        out.append("")
        out.append(f"def {fn.name}({params})  locals={len(fn.local_names)} max_stack={fn.max_stack}")
        starts = dict(fn.lines)
        for pc, (op, arg) in enumerate(fn.instrs):
            if pc in starts:
                out.append(f"  line {starts[pc]}:")
            operand = _operand(program, fn, op, arg) if SPECS[op].has_arg else ""
            out.append(f"    {pc:5d}  {op.name:<22s}{operand:<28s} gas {SPECS[op].gas}")
    return "\n".join(out)
