"""Built-in tools for RL stages (TRL calls them during rollouts; the model sees their docstrings as schemas).

A tool returns text (what the model reads next); an exception becomes a tool turn holding the error.
"""
from __future__ import annotations

import ast
import operator

from core.registry import TOOLS
from workers.functions import load_function
from workers.sandbox import SandboxLimits, run_untrusted

OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
             ast.USub: operator.neg, ast.UAdd: operator.pos}
LIMIT = 10 ** 30
PYTHON_LIMITS = SandboxLimits(wall_s=5.0, memory_mb=512, processes=32, output_bytes=4_000)


def get_tools(names: list[str]) -> list:
    """Tool functions by registry name, `file.py:function` or `package.module:function` (core/registry.py)."""
    return [load_function(name, TOOLS, "tool") for name in names]


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: Numbers with + - * / and parentheses, e.g. "1234+5678".

    Returns:
        The value of the expression.
    """
    value = _evaluate(ast.parse(expression.strip(), mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _evaluate(node):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        result = OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
        if not abs(result) < LIMIT:  # also catches inf and nan
            raise ValueError("result too large")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("only numbers, + - * / and parentheses are allowed")


def python(code: str) -> str:
    """Run Python code and return what it prints.

    Args:
        code: A Python program; print the values you need.

    Returns:
        The program's output (stdout, then stderr when it failed).
    """
    result = run_untrusted(code, PYTHON_LIMITS)
    if result.timed_out:
        return "error: timed out"
    return result.stdout if result.ok else (result.stdout + result.stderr)[-PYTHON_LIMITS.output_bytes:]
