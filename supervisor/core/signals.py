"""Linux signal names and numbers, as start-stop-daemon spells them (no ``SIG`` prefix).

A table rather than the ``signal`` module so that the core stays free of OS imports; the numbers are
the Linux x86/arm generic ABI ones, which is the only platform svctl supports.
"""

NUMBERS: dict[str, int] = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9, "USR1": 10,
    "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "CHLD": 17, "CONT": 18,
    "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
}
NAMES: dict[int, str] = {number: name for name, number in NUMBERS.items()}
MAX_SIGNAL = 64  # SIGRTMAX on Linux


def signal_name(number: int) -> str:
    """``15`` -> ``"TERM"``; numbers without a name stay numbers (``"34"``)."""
    return NAMES.get(number, str(number))


def parse_signal(text: str) -> int:
    """``"TERM"``, ``"-TERM"``, ``"-15"`` or ``"15"`` -> 15. Raises ValueError with the reason."""
    word = text[1:] if text.startswith("-") else text
    if word.isdigit():
        number = int(word)
        if not 1 <= number <= MAX_SIGNAL:
            raise ValueError(f"signal number {number} is out of range 1-{MAX_SIGNAL}")
        return number
    if word.upper().startswith("SIG") and word.upper()[3:] in NUMBERS:
        raise ValueError(f"write {word.upper()[3:]!r}, not {word!r} (start-stop-daemon syntax has no SIG prefix)")
    if word.upper() in NUMBERS:
        return NUMBERS[word.upper()]
    raise ValueError(f"{text!r} is not a signal name ({', '.join(NUMBERS)}) or number")
