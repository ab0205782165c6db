# Helpers shared by the workflow: what each dataset needs and where its raw files come from.
from crossan.config import dataset_media

MEDIA_MODALITIES = ["video", "audio", "image"]


def dataset_entry(wildcards):
    return config["catalog"][wildcards.dataset]


def raw_dir(wildcards):
    """The raw MicroLens-layout folder of a dataset: generated, downloaded or the user's."""
    entry = dataset_entry(wildcards)
    if entry["kind"] == "demo":
        return f"resources/{wildcards.dataset}/demo"
    if entry.get("data_dir"):
        return entry["data_dir"]
    return f"resources/{wildcards.dataset}/download"


def raw_dir_input(wildcards):
    """Input of dataset_manifest: the demo folder, or the manifest of a finished download."""
    entry = dataset_entry(wildcards)
    if entry["kind"] == "demo":
        return raw_dir(wildcards)
    if entry.get("data_dir"):
        return []  # a user's existing copy: checked by the rule itself, never produced
    return f"resources/{wildcards.dataset}/download/manifest.json"


def media_setting(key):
    return lambda wildcards: dataset_media(config, wildcards.dataset)[key]


def all_outputs(wildcards):
    outputs = []
    for name in config["datasets"]:
        outputs.append(f"results/{name}/data/stats.json")
        outputs += expand("results/{dataset}/media/{modality}.h5", dataset=name, modality=MEDIA_MODALITIES)
    return outputs
