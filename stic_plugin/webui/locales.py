"""Labels, help texts and messages of the STIC parts of the web UI, in English and Chinese.

LLaMA-Factory's web UI offers en, ru, zh, ko and ja; a language without a text here gets the English one.
``locale_entries()`` gives the entries for LLaMA-Factory's ``LOCALES`` (element name -> language -> the
component's label, info, value or choices), which the web UI applies when the language changes. The English
help of an option or a command key is the option's own help text.
"""

import copy

LANGUAGES = ("en", "ru", "zh", "ko", "ja")

# element name -> the LLaMA-Factory entry whose texts (in all its languages) it takes
SHARED = {
    "stic_preview_btn": "cmd_preview_btn",
    "stic_start_btn": "start_btn",
    "stic_abort_btn": "stop_btn",
    "stic_output_box": "output_box",
}

ACTION_CHOICES = {
    "en": [
        ("Preference data (pref)", "pref"),
        ("Description-infused data (infuse)", "infuse"),
        ("Describe and respond (dar)", "dar"),
    ],
    "zh": [("偏好数据 (pref)", "pref"), ("描述注入数据 (infuse)", "infuse"), ("先描述后回答 (dar)", "dar")],
}

# Train tab: the stic_* options (English help: the option's own, see train_tab.option_help)
TRAIN_TEXTS = {
    "stic_tab": {"en": {"label": "STIC"}, "zh": {"label": "STIC 参数设置"}},
    "stic_alpha": {
        "en": {"label": "α, weight of the NLL (stic_alpha)"},
        "zh": {
            "label": "α：NLL 权重 (stic_alpha)",
            "info": "加到 DPO 损失上的优选回复负对数似然的权重 α（STIC 公式 4.1）。"
            "论文使用 1/1024 与求和的 NLL。0 即普通 DPO。",
        },
    },
    "stic_nll_reduction": {
        "en": {"label": "NLL reduction (stic_nll_reduction)"},
        "zh": {
            "label": "NLL 归约方式 (stic_nll_reduction)",
            "info": "优选回复各 token 的 NLL 如何按序列归约：sum（与论文及作者代码一致）或 mean"
            "（按序列取平均，即 LLaMA-Factory 的 pref_ftx 所用的归一化）。",
        },
    },
}

# STIC data tab: the form's fields, by the key they set (English help: the command's own, or the text below)
FIELD_TEXTS = {
    "images": {
        "en": {
            "label": "Image folder or list",
            "info": "A folder searched recursively for images (image_dir), or a file listing them (image_list: "
            "one path a line, or JSON/JSONL with an image column).",
        },
        "zh": {
            "label": "图片文件夹或列表",
            "info": "递归查找图片的文件夹（image_dir），"
            "或列出图片的文件（image_list：每行一个路径，或带 image 列的 JSON/JSONL）。",
        },
    },
    "source": {
        "en": {
            "label": "Input data",
            "info": "A dataset name in the dataset_info.json of source_dataset_dir (dataset, any formatting "
            "LLaMA-Factory reads), or a LLaVA-format JSON/JSONL file (llava_file).",
        },
        "zh": {
            "label": "输入数据",
            "info": "source_dataset_dir 下 dataset_info.json 中的数据集名称（dataset，LLaMA-Factory 可读的任何格式），"
            "或 LLaVA 格式的 JSON/JSONL 文件（llava_file）。",
        },
    },
    "image_folder": {
        "en": {
            "label": "Image folder",
            "info": "Folder that the input's image paths start from (image_folder for a LLaVA file, media_dir for "
            "a dataset); empty: the file's folder, or source_dataset_dir.",
        },
        "zh": {
            "label": "图片文件夹",
            "info": "输入数据中图片路径的起始文件夹（LLaVA 文件为 image_folder，数据集为 media_dir）；"
            "留空：文件所在文件夹，或 source_dataset_dir。",
        },
    },
    "dataset_dir": {
        "en": {"label": "Dataset folder"},
        "zh": {"label": "数据集文件夹", "info": "输出数据集及其 dataset_info.json 条目所在的文件夹。"},
    },
    "dataset_name": {
        "en": {"label": "Dataset name"},
        "zh": {"label": "数据集名称", "info": "数据集名称（dataset_dir 中的文件夹与 dataset_info 条目）。"},
    },
    "predictions_name": {
        "en": {"label": "Predictions name"},
        "zh": {"label": "预测结果名称", "info": "预测结果文件夹与摘要的名称。"},
    },
    "max_samples": {
        "en": {"label": "Number of images"},
        "zh": {"label": "图片数量", "info": "最多使用这么多张图片，按 seed 可复现地抽取；留空则全部使用。"},
    },
    "num_samples": {
        "en": {"label": "Number of samples"},
        "zh": {"label": "样本数量", "info": "按 seed 从输入中抽取的样本数；留空则全部使用。"},
    },
    "metric": {
        "en": {"label": "Metric"},
        "zh": {
            "label": "评测指标",
            "info": "将预测与参考答案比较：choice（选择题字母）、exact（文本相同）、"
            "contains（预测包含参考答案）；none 不评分。",
        },
    },
    "batch_size": {
        "en": {"label": "Batch size"},
        "zh": {
            "label": "批大小",
            "info": "同时处理的图片数：连续批处理引擎让它们的生成持续解码"
            "（pref 每张图两个生成，infuse 与 dar 各一个）。",
        },
    },
    "max_new_tokens": {
        "en": {"label": "Max new tokens"},
        "zh": {"label": "最大生成长度", "info": "回复的最大长度（token 数）。"},
    },
    "temperature": {"en": {"label": "Temperature"}, "zh": {"label": "温度系数", "info": "采样温度；0 为贪心解码。"}},
    "engine": {
        "en": {"label": "Engine"},
        "zh": {
            "label": "生成引擎",
            "info": "continuous：某行生成结束后其位置立即交给下一个请求（模型不支持时回退到 plain 并给出警告）；"
            "plain：transformers 的 generate，固定批次。",
        },
    },
}
# labels that depend on the action
ACTION_FIELD_TEXTS = {
    ("dar", "dataset_dir"): {
        "en": {"label": "Predictions folder"},
        "zh": {"label": "预测结果文件夹", "info": "预测结果（predictions_name/part-*.jsonl）所在的文件夹。"},
    },
    ("dar", "num_samples"): {
        "en": {"label": "Number of questions"},
        "zh": {"label": "问题数量", "info": "按 seed 从输入中抽取的问题数；留空则全部使用。"},
    },
}

DATA_TAB_TEXTS = {
    "stic_data_tab": {"en": {"label": "STIC data"}, "zh": {"label": "STIC 数据"}},
    "stic_action": {
        "en": {
            "label": "Action",
            "info": "pref: stage-1 preference pairs from unlabeled images; infuse: stage-2 description-infused "
            "instruction data, written by the stage-1 model (pick its adapter in the top bar's checkpoints); "
            "dar: describe-and-respond answers, scored when the answers are known.",
            "choices": ACTION_CHOICES["en"],
        },
        "zh": {
            "label": "操作",
            "info": "pref：由无标注图片生成第一阶段偏好数据；infuse：由第一阶段模型（在顶部检查点中选择其适配器）"
            "生成第二阶段描述注入指令数据；dar：先描述后回答，已知答案时计算准确率。",
            "choices": ACTION_CHOICES["zh"],
        },
    },
    "stic_advanced_tab": {"en": {"label": "Advanced"}, "zh": {"label": "高级设置"}},
    "stic_advanced": {
        "en": {
            "label": "Other keys",
            "info": "One key=value a line, as on the stic-cli command line; a key set here wins over the fields above. "
            "The keys are listed below.",
        },
        "zh": {
            "label": "其他参数",
            "info": "每行一个 key=value，与 stic-cli 命令行相同；此处设置的参数优先于上方字段。可用参数见下方列表。",
        },
    },
    "stic_log": {"en": {"label": "Log"}, "zh": {"label": "日志"}},
    "stic_summary": {"en": {"label": "Summary"}, "zh": {"label": "统计摘要"}},
    "stic_plot": {"en": {"label": "Response lengths"}, "zh": {"label": "回复长度"}},
    "stic_handover_btn": {"en": {"value": "Train on this dataset"}, "zh": {"value": "用此数据集训练"}},
    "stic_trust_code": {
        "en": {
            "label": "Run the code in the model folder",
            "info": "trust_remote_code=true runs Python code shipped inside the model folder with the web UI's "
            "rights: tick only for a model you trust. Asked again for every run.",
        },
        "zh": {
            "label": "运行模型文件夹中的代码",
            "info": "trust_remote_code=true 会以网页界面的权限运行模型文件夹中附带的 Python 代码：仅对信任的模型勾选。"
            "每次运行都会重新询问。",
        },
    },
}

MESSAGES = {
    "finished": {"en": "Finished: {name} in {folder}.", "zh": "完成：{name}，位于 {folder}。"},
    "aborted": {
        "en": "Aborted. Start again with the same settings to go on from where it stopped.",
        "zh": "已中断。使用相同设置再次点击“开始”即可从中断处继续。",
    },
    "aborting": {"en": "Aborting…", "zh": "正在中断……"},
    "failed": {"en": "Failed (exit code {code}): {error}", "zh": "失败（退出码 {code}）：{error}"},
    "failed_see_log": {"en": "see the log below", "zh": "见下方日志"},
    "refused": {"en": "Not started: {error}", "zh": "未开始：{error}"},
    "confirm_code": {
        "en": "Not started: trust_remote_code=true runs the code shipped in {model}. If you trust it, tick "
        "“Run the code in the model folder” below and click Start again.",
        "zh": "未开始：trust_remote_code=true 会运行 {model} 中附带的代码。若信任该模型，请勾选下方"
        "“运行模型文件夹中的代码”，再次点击“开始”。",
    },
    "running": {"en": "Running `{command}`…", "zh": "运行中：`{command}`……"},
    "starting": {"en": "Starting (loading the model)…", "zh": "启动中（加载模型）……"},
    "handover": {
        "en": "Train tab: stage {stage}, dataset {name} in {folder}.",
        "zh": "训练页：阶段 {stage}，数据集 {name}（{folder}）。",
    },
    "no_recipe": {
        "en": "No shipped recipe for template `{template}` (recipes exist for {known}): the Train tab keeps its "
        "values; set the learning rate, epochs and LoRA as the recipes do.",
        "zh": "模板 `{template}` 没有随附的配方（已有：{known}）：训练页保留原值；请按配方设置学习率、轮数与 LoRA。",
    },
    "no_handover": {
        "en": "Only a dataset written by pref or infuse can be trained on.",
        "zh": "只有 pref 或 infuse 生成的数据集可以用于训练。",
    },
    "advanced_keys": {
        "en": "Keys of `stic-cli {action}` for the box above (`stic-cli {action} --help`):",
        "zh": "上方输入框可用的 `stic-cli {action}` 参数（`stic-cli {action} --help`）：",
    },
    "no_records": {"en": "No record written.", "zh": "没有写入任何记录。"},
    "negative_corruption": {
        "en": "from a corrupted image: {corruption} ({params})",
        "zh": "来自损坏的图片：{corruption}（{params}）",
    },
    "negative_hallucination": {"en": "from a hallucination prompt:", "zh": "来自诱导幻觉的提示："},
    "column_image": {"en": "Image", "zh": "图片"},
    "column_chosen": {"en": "Chosen", "zh": "优选回复"},
    "column_rejected": {"en": "Rejected", "zh": "劣选回复"},
    "column_first_turn": {"en": "First user turn, infused", "zh": "注入描述后的第一轮用户输入"},
    "column_answer": {"en": "Answer", "zh": "回答"},
    "column_question": {"en": "Question", "zh": "问题"},
    "column_description": {"en": "Description", "zh": "描述"},
    "column_prediction": {"en": "Prediction", "zh": "预测"},
    "column_reference": {"en": "Reference", "zh": "参考答案"},
}


def message(key: str, lang: str | None, **fields) -> str:
    texts = MESSAGES[key]
    return texts.get(lang or "en", texts["en"]).format(**fields)


def option_help(name: str) -> str:
    """The help text of a ``stic_*`` option, as LLaMA-Factory's argument parser shows it."""
    import dataclasses

    from ..train.options import SticArguments

    return next(f.metadata.get("help", "") for f in dataclasses.fields(SticArguments) if f.name == name)


def in_every_language(texts: dict[str, dict]) -> dict[str, dict]:
    """{language: component texts} for every language of the web UI: English where a text is missing."""
    english = texts["en"]
    return {lang: {**english, **texts.get(lang, {})} for lang in LANGUAGES}


def field_element(action: str | None, field: str) -> str:
    """The element name of a field of the STIC data tab: ``stic_pref_images``, ``stic_batch_size``, ..."""
    return f"stic_{action}_{field}" if action else f"stic_{field}"


def field_texts(action: str | None, field: str, english_help: str) -> dict[str, dict]:
    texts = copy.deepcopy(ACTION_FIELD_TEXTS.get((action, field)) or FIELD_TEXTS.get(field) or {"en": {}})
    texts["en"].setdefault("label", field)
    if english_help:
        texts["en"].setdefault("info", english_help)
    return texts


def locale_entries(host_locales: dict) -> dict[str, dict[str, dict]]:
    """Element name -> language -> texts, for LLaMA-Factory's LOCALES (every language it offers)."""
    from .command_line import ACTION_FIELDS, SHARED_FIELDS, help_of

    entries = {name: copy.deepcopy(host_locales[source]) for name, source in SHARED.items() if source in host_locales}
    for name, texts in TRAIN_TEXTS.items():
        texts = copy.deepcopy(texts)
        if name != "stic_tab":
            texts["en"]["info"] = option_help(name)
        entries[name] = in_every_language(texts)
    for name, texts in DATA_TAB_TEXTS.items():
        entries[name] = in_every_language(texts)
    for action, fields in ACTION_FIELDS.items():
        for field in fields:
            entries[field_element(action, field)] = in_every_language(
                field_texts(action, field, help_of(action, field))
            )
    for field in SHARED_FIELDS:
        entries[field_element(None, field)] = in_every_language(field_texts(None, field, help_of("pref", field)))
    return entries


def english_texts() -> dict[str, dict]:
    """The English texts of every STIC element, which the components are made with (before any language
    change, and even without the locales patch)."""
    from llamafactory.webui.locales import LOCALES

    return {name: texts["en"] for name, texts in locale_entries(LOCALES).items()}
