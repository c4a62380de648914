"""Fine-tuning: LoRA and full, label and chat tasks, CPU fast path, checkpoints and resume."""

from typing import Any

from zimo.train.config import EarlyStopping, LoraSettings, TrainConfig

__all__ = ["EarlyStopping", "LoraSettings", "TrainConfig", "train_label", "train_chat"]


def __getattr__(name: str) -> Any:
    # Lazy: reading zimo.yaml imports TrainConfig, and must not import torch.
    if name == "train_label":
        from zimo.train.label import train_label

        return train_label
    if name == "train_chat":
        from zimo.train.chat import train_chat

        return train_chat
    raise AttributeError(name)
