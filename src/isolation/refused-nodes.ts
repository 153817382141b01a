// ComfyUI core nodes a user key's prompt may not hold: what each does with files that no check of the gateway can keep to the key's own, and what to use instead.

/** The input ComfyUI fills with the subfolders of its input folder, in the nodes that load a whole folder. */
export const FOLDER_INPUT = 'folder';

/**
 * Core nodes that load every file of an input subfolder (comfy_extras/nodes_dataset.py; nodes_train.py before it, whose
 * `LoadImageSetFromFolderNode` joins `folder` unchecked): its files may be other keys' (uploads share subfolders, `clipspace`).
 */
export const FOLDER_LOADERS: readonly string[] = [
  'LoadImageDataSetFromFolder',
  'LoadImageTextDataSetFromFolder',
  'LoadVideoDataSetFromFolder',
  'LoadVideoTextDataSetFromFolder',
  'LoadImageSetFromFolderNode',
  'LoadImageTextSetFromFolderNode',
];

const LOADS_FOLDER = "loads every file of an input folder, other keys' files too: load files one by one";
/** SaveImageDataSetToFolder and its text kin: `{filename_prefix}_00000.png` in `folder_name`, unnumbered (the only mode of older releases, which join `folder_name` unchecked too). */
const SAVES_FIXED_NAMES =
  "writes fixed names (prefix_00000.png, …) into an output folder, over another key's files of those names: save with SaveImage, a folder in its filename_prefix";
/** SaveTrainingDataset: `shard_0000.pkl` and `metadata.json` in `folder_name`, whoever wrote them before. */
const SAVES_DATASET = "writes fixed names (shard_0000.pkl, metadata.json) into a shared dataset folder, over another key's dataset of that name";
/** LoadTrainingDataset: any folder of the dataset folders, whoever saved it. */
const LOADS_DATASET = "loads a saved training dataset, another key's too: the gateway cannot tell whose a dataset folder is";

/** Each refused node, and why (the end of the sentence `Prompt node N (class) …`). */
export const REFUSED_NODES: ReadonlyMap<string, string> = new Map([
  ...FOLDER_LOADERS.map((classType): [string, string] => [classType, LOADS_FOLDER]),
  ['SaveImageDataSetToFolder', SAVES_FIXED_NAMES],
  ['SaveImageTextDataSetToFolder', SAVES_FIXED_NAMES],
  ['SaveTrainingDataset', SAVES_DATASET],
  ['LoadTrainingDataset', LOADS_DATASET],
]);
