"""Versioned prompt templates. A record's ``meta.prompt_template`` names the one that made it.

Change a template's text → bump its version (``.v2``), so records made by different prompts stay
distinguishable and the request cache does not mix them up.
"""

from __future__ import annotations

SELF_INSTRUCT_EN = "self_instruct.en.v1"
SELF_INSTRUCT_ZH = "self_instruct.zh.v1"
ANSWER = "answer.v1"
LABEL = "label.v1"
LABEL_RETRY = "label.retry.v1"
DISTILL = "distill.v1"

_SELF_INSTRUCT = {
    SELF_INSTRUCT_EN: """You are asked to come up with a set of {n} diverse task instructions. \
These task instructions will be given to a language model and we will evaluate it for completing \
the instructions.

Here are the requirements:
1. Try not to repeat the verb for each instruction to maximize diversity.
2. The language used for the instruction also should be diverse. For example, you should combine \
questions with imperative instructions.
3. The type of instructions should be diverse: open-ended generation, classification, editing, \
rewriting, extraction, question answering, brainstorming, reasoning, coding, and so on.
4. A language model should be able to complete the instruction. Do not ask for images, audio, \
video, files, drawings or anything that needs the internet or actions in the real world.
5. The instructions should be in English.
6. The instructions should be 1 to 2 sentences long. Either an imperative sentence or a question.
7. Where it helps, add an input for the instruction: a specific example, 1 to 3 sentences, with \
realistic data; not every instruction needs an input. If there is none, write "<noinput>".
8. The output should be an appropriate response to the instruction and the input, under 100 words.

Use exactly this format for every task, numbered from {start} to {end}, separated by "###":

###
{start}. Instruction: <instruction>
{start}. Input:
<input or <noinput>>
{start}. Output:
<output>

Here are some example tasks:
{examples}

Now write tasks {start} to {end}.""",
    SELF_INSTRUCT_ZH: """请你构思 {n} 个多样化的任务指令。这些指令将交给一个语言模型去完成，\
我们会评估它完成得如何。

要求如下：
1. 尽量不要重复使用同一个动词，以增加多样性。
2. 指令的表达方式要多样，例如把问句和祈使句结合起来。
3. 指令的类型要多样：开放式生成、分类、编辑、改写、信息抽取、问答、头脑风暴、推理、编程等。
4. 语言模型必须能够完成该指令。不要要求图片、音频、视频、文件、绘图，也不要要求联网或在现实中执行操作。
5. 指令必须用简体中文书写。
6. 指令长度为一到两句话，可以是祈使句或问句。
7. 在有帮助时为指令提供输入：一个具体的例子，一到三句话，使用真实的数据；并非每条指令都需要输入。\
没有输入时写 "<noinput>"。
8. 输出是对指令和输入的恰当回答，不超过 200 字。

每个任务严格使用下面的格式，编号从 {start} 到 {end}，任务之间用 "###" 分隔：

###
{start}. Instruction: <指令>
{start}. Input:
<输入或 <noinput>>
{start}. Output:
<输出>

下面是一些示例任务：
{examples}

现在请写出第 {start} 到第 {end} 个任务。""",
}


def self_instruct_prompt(template: str, examples: list[dict], n: int) -> str:
    """The Self-Instruct request: ``examples`` (instruction/input/output) then ``n`` new ones."""
    blocks = []
    for i, ex in enumerate(examples, 1):
        inp = ex.get("input") or "<noinput>"
        blocks.append(
            f"###\n{i}. Instruction: {ex['instruction']}\n{i}. Input:\n{inp}\n"
            f"{i}. Output:\n{ex.get('output', '')}"
        )
    start = len(examples) + 1
    return _SELF_INSTRUCT[template].format(
        n=n, start=start, end=start + n - 1, examples="\n".join(blocks)
    )


def label_prompt(
    text: str,
    labels: list[str],
    instruction: str | None,
    descriptions: dict[str, str] | None,
) -> str:
    """Ask for one label from a closed set, answered as JSON ``{"label": ...}``."""
    lines = [instruction or "Classify the text below."]
    lines.append("Choose exactly one label from this list:")
    for lab in labels:
        desc = (descriptions or {}).get(lab)
        lines.append(f"- {lab}" + (f": {desc}" if desc else ""))
    lines.append('Answer with JSON only, like {"label": "<one of the labels>"}.')
    lines.append("")
    lines.append("Text:")
    lines.append(text)
    return "\n".join(lines)


def label_retry_prompt(previous: str, labels: list[str]) -> str:
    """Follow-up after an answer outside the label set."""
    return (
        f"Your answer {previous[:200]!r} is not one of the allowed labels. "
        f'Reply with JSON only, {{"label": ...}}, where the label is exactly one of: '
        + ", ".join(labels)
    )
